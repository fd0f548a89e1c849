/* The config file parser. Pure code over a text buffer: no I/O, every string copied into
 * the config's own arena, every rejection reported as "file:line: what". */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "util.h"

#define LINE_MAX_LEN 2048
#define WORDS_MAX    (SVC_ARGV_MAX + 2)

struct parser {
	struct config *c;
	struct settings *s;
	const char *name;
	int line;
	char *err;
	size_t errlen;
	struct svc_def *svc;			    /* the service block we are in */
	char after[SVC_MAX][SVC_MAX][SVC_NAME_MAX]; /* unresolved "after" names */
};

static const char *const exhausted_names[] = {
	[SVC_EXHAUSTED_POWEROFF] = "poweroff",
	[SVC_EXHAUSTED_REBOOT] = "reboot",
	[SVC_EXHAUSTED_HALT] = "halt",
	[SVC_EXHAUSTED_STOP] = "stop",
};

const char *svc_exhausted_to_string(enum svc_exhausted e)
{
	return exhausted_names[e];
}

static int fail(struct parser *p, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(struct parser *p, int r, const char *fmt, ...)
{
	char msg[CONFIG_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%s:%d: %s", p->name, p->line, msg);
	return r;
}

static char *arena_strdup(struct parser *p, const char *str)
{
	size_t n = strlen(str) + 1;
	char *d;

	if (p->c->used + n > sizeof(p->c->arena))
		return NULL;
	d = p->c->arena + p->c->used;
	memcpy(d, str, n);
	p->c->used += n;
	return d;
}

/* Splits a line into words: spaces separate, double quotes group, '#' outside quotes
 * starts a comment. Modifies line in place. Returns the count or a negative errno. */
static int split_words(struct parser *p, char *line, char *words[WORDS_MAX])
{
	char *r = line, *w = line;
	int n = 0;

	for (;;) {
		bool quoted = false;

		while (*r == ' ' || *r == '\t')
			r++;
		if (*r == '\0' || *r == '#')
			return n;
		if (n == WORDS_MAX)
			return fail(p, -E2BIG, "too many words (at most %d)", WORDS_MAX);
		words[n++] = w;
		for (; *r; r++) {
			if (*r == '"') {
				quoted = !quoted;
				continue;
			}
			if (!quoted && (*r == ' ' || *r == '\t'))
				break;
			*w++ = *r;
		}
		if (quoted)
			return fail(p, -EINVAL, "unterminated quote");
		if (*r)
			r++;
		*w++ = '\0';
	}
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= SVC_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) &&
		    *s != '-' && *s != '_')
			return false;
	return true;
}

static bool valid_env_key(const char *s, size_t n)
{
	if (n == 0 || isdigit((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

static int parse_uint(struct parser *p, const char *what, const char *v, unsigned min,
		      unsigned max, unsigned *out)
{
	unsigned long n;
	char *end;

	if (!isdigit((unsigned char)v[0]))
		goto bad;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < min || n > max)
		goto bad;
	*out = (unsigned)n;
	return 0;
bad:
	return fail(p, -EINVAL, "%s: \"%s\" is not a whole number from %u to %u", what, v,
		    min, max);
}

static int need_service(struct parser *p, const char *directive)
{
	if (!p->svc)
		return fail(p, -EINVAL,
			    "\"%s\" outside a service block (start one with "
			    "\"service <name>\")",
			    directive);
	return 0;
}

static int nargs(struct parser *p, char **w, int n, int min, int max)
{
	if (n - 1 < min || n - 1 > max) {
		if (min == max)
			return fail(p, -EINVAL, "\"%s\" takes %d argument%s, got %d",
				    w[0], min, min == 1 ? "" : "s", n - 1);
		return fail(p, -EINVAL, "\"%s\" takes %d to %d arguments, got %d", w[0],
			    min, max, n - 1);
	}
	return 0;
}

static int do_set(struct parser *p, char **w, int n)
{
	char serr[SETTINGS_ERR_MAX];
	char *eq;
	int r;

	if ((r = nargs(p, w, n, 1, 1)) < 0)
		return r;
	eq = strchr(w[1], '=');
	if (!eq)
		return fail(p, -EINVAL, "set takes key=value, got \"%s\"", w[1]);
	*eq = '\0';
	r = settings_set(p->s, w[1], eq + 1, serr, sizeof(serr));
	if (r < 0)
		return fail(p, r, "%s", serr);
	return 0;
}

static int do_module(struct parser *p, char **w, int n)
{
	int r;

	if ((r = nargs(p, w, n, 1, 1)) < 0)
		return r;
	if (p->c->nmodules == CONFIG_MODULE_MAX)
		return fail(p, -E2BIG, "too many modules (at most %d)",
			    CONFIG_MODULE_MAX);
	for (const char *s = w[1]; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return fail(p, -EINVAL, "\"%s\" is not a module name", w[1]);
	if (!(p->c->modules[p->c->nmodules++] = arena_strdup(p, w[1])))
		return fail(p, -E2BIG, "config too large");
	return 0;
}

static int do_service(struct parser *p, char **w, int n)
{
	struct svc_def *d;
	int r;

	if ((r = nargs(p, w, n, 1, 1)) < 0)
		return r;
	if (!valid_name(w[1]))
		return fail(p, -EINVAL,
			    "service name \"%s\": use 1-%d of a-z, 0-9, '-', '_'", w[1],
			    SVC_NAME_MAX - 1);
	if (config_service(p->c, w[1]))
		return fail(p, -EEXIST, "service %s is declared twice", w[1]);
	if (p->c->nsvc == SVC_MAX)
		return fail(p, -E2BIG, "too many services (at most %d)", SVC_MAX);

	d = &p->c->svc[p->c->nsvc++];
	*d = (struct svc_def){
		.backoff_min = 1,
		.backoff_max = 30,
		.stable_secs = 60,
		.restart_limit = 10,
		.ready_timeout = 120,
		.on_exhausted = SVC_EXHAUSTED_POWEROFF,
		.line = p->line,
	};
	snprintf(d->name, sizeof(d->name), "%s", w[1]);
	p->svc = d;
	return 0;
}

static int do_exec(struct parser *p, char **w, int n)
{
	struct svc_def *d = p->svc;

	if (d->nargv)
		return fail(p, -EEXIST, "service %s: exec is given twice", d->name);
	if (n < 2)
		return fail(p, -EINVAL, "exec needs a command");
	if (w[1][0] != '/')
		return fail(p, -EINVAL, "exec: \"%s\" is not an absolute path", w[1]);
	if (n - 1 > SVC_ARGV_MAX)
		return fail(p, -E2BIG, "exec: too many arguments (at most %d)",
			    SVC_ARGV_MAX);
	for (int i = 1; i < n; i++)
		if (!(d->argv[d->nargv++] = arena_strdup(p, w[i])))
			return fail(p, -E2BIG, "config too large");
	d->argv[d->nargv] = NULL;
	return 0;
}

static int do_env(struct parser *p, char **w, int n)
{
	struct svc_def *d = p->svc;
	const char *eq;
	int r;

	if ((r = nargs(p, w, n, 1, 1)) < 0)
		return r;
	eq = strchr(w[1], '=');
	if (!eq || !valid_env_key(w[1], (size_t)(eq - w[1])))
		return fail(p, -EINVAL,
			    "env takes NAME=value with NAME of A-Z, a-z, 0-9, '_', "
			    "got \"%s\"",
			    w[1]);
	for (int i = 0; i < d->nenv; i++)
		if (strncmp(d->envp[i], w[1], (size_t)(eq - w[1]) + 1) == 0)
			return fail(p, -EEXIST, "service %s: %.*s is set twice", d->name,
				    (int)(eq - w[1]), w[1]);
	if (d->nenv == SVC_ENV_MAX)
		return fail(p, -E2BIG, "too many env entries (at most %d)", SVC_ENV_MAX);
	if (!(d->envp[d->nenv++] = arena_strdup(p, w[1])))
		return fail(p, -E2BIG, "config too large");
	d->envp[d->nenv] = NULL;
	return 0;
}

/* "after a [b ...]", on one line or several: the service starts once all are ready. */
static int do_after(struct parser *p, char **w, int n)
{
	char(*names)[SVC_NAME_MAX] = p->after[p->svc - p->c->svc];
	int r, k = 0;

	if ((r = nargs(p, w, n, 1, SVC_MAX)) < 0)
		return r;
	while (k < SVC_MAX && names[k][0])
		k++;
	for (int i = 1; i < n; i++) {
		if (!valid_name(w[i]))
			return fail(p, -EINVAL, "after: \"%s\" is not a service name",
				    w[i]);
		for (int j = 0; j < k; j++)
			if (streq(names[j], w[i]))
				return fail(p, -EEXIST,
					    "service %s: after names %s twice",
					    p->svc->name, w[i]);
		if (k == SVC_MAX)
			return fail(p, -E2BIG,
				    "service %s: after names more than %d services",
				    p->svc->name, SVC_MAX);
		snprintf(names[k++], SVC_NAME_MAX, "%s", w[i]);
	}
	return 0;
}

static int do_ready(struct parser *p, char **w, int n)
{
	int r;

	if (p->svc->ready_socket[0] || p->svc->ready_network)
		return fail(p, -EEXIST, "service %s: ready is given twice", p->svc->name);
	if (n == 2 && streq(w[1], "network")) {
		p->svc->ready_network = true;
		return 0;
	}
	if ((r = nargs(p, w, n, 2, 2)) < 0)
		return r;
	if (!streq(w[1], "socket"))
		return fail(p, -EINVAL,
			    "ready: \"%s\" is not a readiness kind (use: ready "
			    "socket <path>, or ready network)",
			    w[1]);
	if (w[2][0] != '/' || strlen(w[2]) >= sizeof(p->svc->ready_socket))
		return fail(p, -EINVAL,
			    "ready socket: \"%s\" must be an absolute path shorter "
			    "than %zu bytes",
			    w[2], sizeof(p->svc->ready_socket));
	snprintf(p->svc->ready_socket, sizeof(p->svc->ready_socket), "%s", w[2]);
	return 0;
}

static int do_restart(struct parser *p, char **w, int n)
{
	struct svc_def *d = p->svc;
	int r;

	if ((r = nargs(p, w, n, 2, 2)) < 0)
		return r;
	if ((r = parse_uint(p, "restart delay", w[1], 1, 300, &d->backoff_min)) < 0 ||
	    (r = parse_uint(p, "restart delay", w[2], 1, 300, &d->backoff_max)) < 0)
		return r;
	if (d->backoff_min > d->backoff_max)
		return fail(p, -EINVAL,
			    "restart: first delay %u s is above the maximum %u s",
			    d->backoff_min, d->backoff_max);
	return 0;
}

static int do_stable(struct parser *p, char **w, int n)
{
	int r = nargs(p, w, n, 1, 1);
	return r < 0 ? r : parse_uint(p, "stable", w[1], 1, 3600, &p->svc->stable_secs);
}

static int do_limit(struct parser *p, char **w, int n)
{
	int r = nargs(p, w, n, 1, 1);
	return r < 0 ? r : parse_uint(p, "limit", w[1], 0, 10000, &p->svc->restart_limit);
}

static int do_ready_timeout(struct parser *p, char **w, int n)
{
	int r = nargs(p, w, n, 1, 1);

	if (r < 0)
		return r;
	if (p->svc->ready_timeout_set)
		return fail(p, -EEXIST, "service %s: ready_timeout is given twice",
			    p->svc->name);
	p->svc->ready_timeout_set = true;
	return parse_uint(p, "ready_timeout", w[1], 0, 3600, &p->svc->ready_timeout);
}

static int do_on_exhausted(struct parser *p, char **w, int n)
{
	int r;

	if ((r = nargs(p, w, n, 1, 1)) < 0)
		return r;
	for (size_t i = 0; i < ARRAY_SIZE(exhausted_names); i++)
		if (streq(w[1], exhausted_names[i])) {
			p->svc->on_exhausted = (enum svc_exhausted)i;
			return 0;
		}
	return fail(p, -EINVAL,
		    "on_exhausted: \"%s\" is not poweroff, reboot, halt or stop", w[1]);
}

static int do_early(struct parser *p, char **w, int n)
{
	int r = nargs(p, w, n, 0, 0);

	if (r < 0)
		return r;
	if (p->svc->early)
		return fail(p, -EEXIST, "service %s: early is given twice", p->svc->name);
	p->svc->early = true;
	return 0;
}

static const struct {
	const char *word;
	int (*fn)(struct parser *p, char **w, int n);
	bool in_service;
} directives[] = {
	{"set", do_set, false},
	{"module", do_module, false},
	{"service", do_service, false},
	{"exec", do_exec, true},
	{"env", do_env, true},
	{"after", do_after, true},
	{"ready", do_ready, true},
	{"restart", do_restart, true},
	{"stable", do_stable, true},
	{"limit", do_limit, true},
	{"ready_timeout", do_ready_timeout, true},
	{"on_exhausted", do_on_exhausted, true},
	{"early", do_early, true},
};

static int parse_line(struct parser *p, char *line)
{
	char *w[WORDS_MAX];
	int n, r;

	n = split_words(p, line, w);
	if (n <= 0)
		return n;
	for (size_t i = 0; i < ARRAY_SIZE(directives); i++) {
		if (!streq(w[0], directives[i].word))
			continue;
		if (directives[i].in_service && (r = need_service(p, w[0])) < 0)
			return r;
		return directives[i].fn(p, w, n);
	}
	return fail(p, -EINVAL, "unknown directive \"%.64s\"", w[0]);
}

int config_depths(const struct config *c, int *depth, int *cycle)
{
	int deepest = 0;

	for (int i = 0; i < c->nsvc; i++)
		depth[i] = 0;
	/* Relaxation: without a cycle no depth exceeds nsvc - 1 after nsvc rounds. */
	for (int round = 0; round <= c->nsvc; round++)
		for (int i = 0; i < c->nsvc; i++)
			for (int j = 0; j < c->nsvc; j++)
				if (c->svc[i].after_mask & (1u << j) &&
				    depth[j] + 1 > depth[i])
					depth[i] = depth[j] + 1;
	for (int i = 0; i < c->nsvc; i++) {
		if (depth[i] >= c->nsvc) {
			*cycle = i;
			return -ELOOP;
		}
		if (depth[i] > deepest)
			deepest = depth[i];
	}
	return deepest;
}

/* After the last line: every service has a command, every "after" names another
 * service, and the dependencies have no cycle. */
static int finish(struct parser *p)
{
	struct config *c = p->c;
	int depth[SVC_MAX], cycle;

	for (int i = 0; i < c->nsvc; i++) {
		struct svc_def *d = &c->svc[i];

		p->line = d->line;
		if (!d->nargv)
			return fail(p, -EINVAL, "service %s has no exec line", d->name);
		if (d->ready_timeout_set && !d->ready_socket[0] && !d->ready_network)
			return fail(p, -EINVAL,
				    "service %s: ready_timeout needs a \"ready socket\" "
				    "or \"ready network\" line (without one it is ready "
				    "when it starts)",
				    d->name);
		for (int k = 0; k < SVC_MAX && p->after[i][k][0]; k++) {
			const struct svc_def *dep = config_service(c, p->after[i][k]);

			if (!dep)
				return fail(p, -ENOENT,
					    "service %s: after names %s, which is not "
					    "declared",
					    d->name, p->after[i][k]);
			if (dep == d)
				return fail(p, -ELOOP,
					    "service %s: cannot come after itself",
					    d->name);
			d->after_mask |= 1u << (dep - c->svc);
		}
	}
	if (config_depths(c, depth, &cycle) < 0) {
		p->line = c->svc[cycle].line;
		return fail(p, -ELOOP, "service %s: the after chain is a cycle",
			    c->svc[cycle].name);
	}
	return 0;
}

int config_parse(struct config *c, struct settings *s, const char *text, const char *name,
		 char *err, size_t errlen)
{
	struct parser p = {.c = c, .s = s, .name = name, .err = err, .errlen = errlen};
	struct settings saved = *s;
	char line[LINE_MAX_LEN];
	int r = 0;

	memset(c, 0, sizeof(*c));
	for (const char *t = text; *t;) {
		size_t n = strcspn(t, "\n");

		p.line++;
		if (n >= sizeof(line)) {
			r = fail(&p, -E2BIG, "line longer than %d bytes",
				 LINE_MAX_LEN - 1);
			break;
		}
		memcpy(line, t, n);
		line[n] = '\0';
		if ((r = parse_line(&p, line)) < 0)
			break;
		t += n + (t[n] == '\n');
	}
	if (r >= 0)
		r = finish(&p);
	if (r < 0) {
		/* All or nothing: a half-applied config is never used. */
		memset(c, 0, sizeof(*c));
		*s = saved;
		return r;
	}
	return 0;
}

const struct svc_def *config_service(const struct config *c, const char *name)
{
	for (int i = 0; i < c->nsvc; i++)
		if (streq(c->svc[i].name, name))
			return &c->svc[i];
	return NULL;
}
