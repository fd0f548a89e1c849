/* The service supervisor: one table built from the config at boot, driven by the loop in
 * supervise.c through poll fds, timers and the reaper. Nothing here blocks or allocates. */
#define _GNU_SOURCE /* pipe2 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include <linux/magic.h>

#include "log.h"
#include "netup.h"
#include "supervise.h"
#include "svc.h"
#include "svclog.h"

struct svc {
	const struct svc_def *def;
	enum svc_state state;
	pid_t pid;
	int out_r, out_w; /* the output pipe, kept for PID 1's lifetime */
	uint64_t started_ms;
	uint64_t timer_ms; /* probe, restart or kill deadline; 0 = none */
	struct svc_backoff bo;
	struct svclog log;
	char *envp[SVC_ENV_MAX + 2];
	char cgroup[192]; /* "" = no cgroup of its own */
	bool ever_started;
	bool not_ready; /* SVC_STOPPING because it missed its ready_timeout: a failed run */
};

static struct svc svcs[SVC_MAX];
static int nsvc;
static const struct config *config;
static bool stopping_all;
static struct {
	bool pending;
	enum power_action action;
	char why[96];
} shutdown_req;
static char read_buf[4096];
static void (*all_started_hook)(void);
static void (*gate_hook)(void);

void svc_set_all_started_hook(void (*fn)(void))
{
	all_started_hook = fn;
}

void svc_set_gate_hook(void (*fn)(void))
{
	gate_hook = fn;
}

static void (*prestart_hook)(const struct svc_def *d);

void svc_set_prestart_hook(void (*fn)(const struct svc_def *d))
{
	prestart_hook = fn;
}

/* Runs the gate once, before the first service that is not early: what it waits for is
 * needed by every service but those (init/main.c). */
static void maybe_gate(const struct svc *s)
{
	void (*fn)(void) = gate_hook;

	if (!fn || s->def->early)
		return;
	gate_hook = NULL;
	fn();
}

/* Runs the hook once, just before the last service that never ran starts for the first
 * time: whatever that service does comes after it. */
static void maybe_all_started(const struct svc *s)
{
	void (*fn)(void) = all_started_hook;

	if (!fn || s->ever_started)
		return;
	for (int i = 0; i < nsvc; i++)
		if (&svcs[i] != s && !svcs[i].ever_started)
			return;
	all_started_hook = NULL;
	fn();
}

/* What a child that never reached exec counts as: a failed start, like exit status 127. */
#define STATUS_NOT_STARTED (127 << 8)

/* The steps of a child between fork and exec; a failure is reported by step and errno. */
enum child_step { STEP_CGROUP, STEP_STDIN, STEP_OUTPUT, STEP_FDS, STEP_CHDIR, STEP_EXEC };
static const char *const step_names[] = {
	[STEP_CGROUP] = "join cgroup",	   [STEP_STDIN] = "open /dev/null",
	[STEP_OUTPUT] = "redirect output", [STEP_FDS] = "close inherited descriptors",
	[STEP_CHDIR] = "chdir /",	   [STEP_EXEC] = "exec",
};

/* close_range(2) (Linux 5.11); musl has no wrapper for it. */
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct child_report {
	int step;
	int err;
};

void svc_backoff_reset(struct svc_backoff *b, const struct svc_def *d)
{
	*b = (struct svc_backoff){.delay = d->backoff_min};
}

int svc_backoff_next(struct svc_backoff *b, const struct svc_def *d, uint64_t run_ms)
{
	unsigned delay;

	if (run_ms >= (uint64_t)d->stable_secs * 1000)
		svc_backoff_reset(b, d);
	if (d->restart_limit && b->restarts >= d->restart_limit)
		return -1;
	delay = b->delay;
	b->delay = delay > d->backoff_max / 2 ? d->backoff_max : delay * 2;
	b->restarts++;
	return (int)delay;
}

static int svc_index(const struct svc *s)
{
	return (int)(s - svcs);
}

/* Reads what the service wrote, up to a budget so a flood cannot starve the loop. */
static void drain_output(struct svc *s, uint64_t now, size_t budget)
{
	while (budget) {
		ssize_t n = read(s->out_r, read_buf, sizeof(read_buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		svclog_feed(&s->log, read_buf, (size_t)n, now);
		budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
	}
}

static _noreturn_ void child_exec(const struct svc *s, int report_fd)
{
	struct child_report rep = {.step = STEP_CGROUP};
	char path[sizeof(s->cgroup) + 16];
	int fd;

	supervise_child_signals();
	setsid();
	if (s->cgroup[0]) {
		/* Before exec, so that everything the service ever forks is in its cgroup. */
		snprintf(path, sizeof(path), "%s/cgroup.procs", s->cgroup);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, "0", 1) != 1)
			goto fail;
		close(fd);
	}
	rep.step = STEP_STDIN;
	fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || dup2(fd, STDIN_FILENO) < 0)
		goto fail;
	if (fd > STDERR_FILENO)
		close(fd);
	rep.step = STEP_OUTPUT;
	if (dup2(s->out_w, STDOUT_FILENO) < 0 || dup2(s->out_w, STDERR_FILENO) < 0)
		goto fail;
	/* A service gets 0-2 and nothing else of PID 1's: libraries open descriptors
	 * without O_CLOEXEC (tpm2-tss's TPM device). Close-on-exec rather than close, so
	 * report_fd still tells the parent about a failed exec. */
	rep.step = STEP_FDS;
	if (syscall(SYS_close_range, STDERR_FILENO + 1, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		goto fail;
	rep.step = STEP_CHDIR;
	if (chdir("/") < 0)
		goto fail;
	/* PID 1 runs without transparent huge pages (main.c); a service gets the default. */
	prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
	rep.step = STEP_EXEC;
	execve(s->def->argv[0], s->def->argv, s->envp);
fail:
	rep.err = errno;
	(void)!write(report_fd, &rep, sizeof(rep));
	_exit(127);
}

static void join_argv(const struct svc_def *d, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; i < d->nargv && used + 1 < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? " " : "",
				 d->argv[i]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (used >= len && len > 4)
		memcpy(buf + len - 4, "...", 4);
}

static void svc_exited(struct svc *s, int status, uint64_t now);

bool svc_transition_ok(enum svc_state from, enum svc_state to)
{
	switch (from) {
	case SVC_WAITING: /* started (ready at once without a probe), or failed to start */
		return to == SVC_STARTING || to == SVC_READY || to == SVC_BACKOFF ||
		       to == SVC_DOWN;
	case SVC_STARTING: /* ready, stopped (not ready, dependency gone), or exited */
	case SVC_READY:
		return (to == SVC_READY && from == SVC_STARTING) || to == SVC_STOPPING ||
		       to == SVC_WAITING || to == SVC_BACKOFF || to == SVC_DOWN;
	case SVC_STOPPING: /* exited: waits for its dependency, or restarts after a miss */
		return to == SVC_WAITING || to == SVC_BACKOFF || to == SVC_DOWN;
	case SVC_BACKOFF: /* the timer ran out, or its dependency went down meanwhile */
		return to == SVC_WAITING;
	case SVC_DOWN: /* used up its restarts: stays down */
		return false;
	}
	return false;
}

uint64_t svc_state_timer(enum svc_state to, uint64_t now, bool probe, uint64_t delay_ms)
{
	switch (to) {
	case SVC_STARTING:
		return probe ? now + SVC_PROBE_MS : 0;
	case SVC_STOPPING:
		return now + SVC_STOP_TIMEOUT * 1000;
	case SVC_BACKOFF:
		return now + delay_ms;
	default:
		return 0;
	}
}

/* Every change of a service's state goes through here, and so does its timer: the state
 * entered arms its own (svc_state_timer) and clears the last one's. */
static void svc_set_state(struct svc *s, enum svc_state to, uint64_t now, bool probe,
			  uint64_t delay_ms)
{
	if (!svc_transition_ok(s->state, to))
		log_error(
			"%s: supervisor bug: state %d to %d is not a transition it makes",
			s->def->name, (int)s->state, (int)to);
	s->state = to;
	s->timer_ms = svc_state_timer(to, now, probe, delay_ms);
}

static void svc_spawn(struct svc *s)
{
	struct child_report rep;
	uint64_t now = now_ms();
	char args[256];
	int rp[2];
	ssize_t n;
	pid_t pid;

	maybe_all_started(s);
	s->ever_started = true;
	s->started_ms = now;
	if (pipe2(rp, O_CLOEXEC) < 0) {
		log_warn_errno(-errno, "%s: start: pipe", s->def->name);
		svc_exited(s, STATUS_NOT_STARTED, now);
		return;
	}
	pid = fork();
	if (pid < 0) {
		log_warn_errno(-errno, "%s: start: fork", s->def->name);
		close(rp[0]);
		close(rp[1]);
		svc_exited(s, STATUS_NOT_STARTED, now);
		return;
	}
	if (pid == 0) {
		close(rp[0]);
		child_exec(s, rp[1]);
	}
	close(rp[1]);
	/* The report pipe closes on exec: this waits for exec, not for the service. */
	do
		n = read(rp[0], &rep, sizeof(rep));
	while (n < 0 && errno == EINTR);
	close(rp[0]);

	s->pid = pid;
	if (n == (ssize_t)sizeof(rep)) {
		/* The child exits 127; the reaper counts it as a failed start (no probe). */
		svc_set_state(s, SVC_STARTING, now, false, 0);
		log_error("%s: %s %s: %s", s->def->name, step_names[rep.step],
			  rep.step == STEP_EXEC	    ? s->def->argv[0]
			  : rep.step == STEP_CGROUP ? s->cgroup
						    : "",
			  strerror(rep.err));
		return;
	}
	join_argv(s->def, args, sizeof(args));
	log_info("%s: started (pid %d): %s", s->def->name, (int)pid, args);
	if (s->def->ready_socket[0] || s->def->ready_network)
		svc_set_state(s, SVC_STARTING, now, true, 0);
	else
		svc_set_state(s, SVC_READY, now, false, 0);
}

/* Every service s comes after (after=) is ready. */
static bool deps_ready(const struct svc *s)
{
	for (int j = 0; j < nsvc; j++)
		if (s->def->after_mask & (1u << j) && svcs[j].state != SVC_READY)
			return false;
	return true;
}

void svc_start_ready(void)
{
	if (stopping_all)
		return;
	for (int i = 0; i < nsvc; i++) {
		struct svc *s = &svcs[i];

		if (s->state == SVC_WAITING && deps_ready(s)) {
			maybe_gate(s);
			if (prestart_hook)
				prestart_hook(s->def);
			svc_spawn(s);
		}
	}
}

/* Non-blocking: a unix socket connect either succeeds at once or fails at once. */
static bool socket_accepts(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_close_ int fd = -1;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

/* SIGTERM now, SIGKILL at the deadline (svc_tick). The service leads its own session: its
 * process group goes too. */
static void svc_term(struct svc *t, uint64_t now)
{
	kill(-t->pid, SIGTERM);
	kill(t->pid, SIGTERM);
	svc_set_state(t, SVC_STOPPING, now, false, 0);
}

/* The services that come after s go down with it; they start again once s is ready
 * again. */
static void stop_dependents(const struct svc *s, uint64_t now)
{
	for (int i = 0; i < nsvc; i++) {
		struct svc *t = &svcs[i];

		if (!(t->def->after_mask & (1u << svc_index(s))))
			continue;
		switch (t->state) {
		case SVC_STARTING:
		case SVC_READY:
			log_info(
				"%s: stopping (SIGTERM to pid %d): %s is down; starts again once "
				"it is ready",
				t->def->name, (int)t->pid, s->def->name);
			svc_term(t, now);
			break;
		case SVC_BACKOFF:
			log_info("%s: restart put off until %s is ready", t->def->name,
				 s->def->name);
			svc_set_state(t, SVC_WAITING, now, false, 0);
			break;
		default:
			break;
		}
		stop_dependents(t, now);
	}
}

static void describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "ended (wait status 0x%x)", (unsigned)status);
}

static void svc_exhausted(struct svc *s, uint64_t now)
{
	const struct svc_def *d = s->def;
	static const enum power_action actions[] = {
		[SVC_EXHAUSTED_POWEROFF] = POWER_OFF,
		[SVC_EXHAUSTED_REBOOT] = POWER_REBOOT,
		[SVC_EXHAUSTED_HALT] = POWER_HALT,
	};

	svc_set_state(s, SVC_DOWN, now, false, 0);
	log_msg(LOG_CRIT,
		"%s: *** gave up after %u restarts in a row; on_exhausted %s ***",
		d->name, s->bo.restarts, svc_exhausted_to_string(d->on_exhausted));
	if (d->on_exhausted == SVC_EXHAUSTED_STOP) {
		log_msg(LOG_CRIT,
			"%s: *** left stopped; the node stays up without it ***",
			d->name);
		return;
	}
	/* The supervisor shuts down from its loop, outside the reaper. */
	shutdown_req.pending = true;
	shutdown_req.action = actions[d->on_exhausted];
	snprintf(shutdown_req.why, sizeof(shutdown_req.why),
		 "service %s used up its restarts", d->name);
}

static void svc_exited(struct svc *s, int status, uint64_t now)
{
	enum svc_state was = s->state;
	bool not_ready = s->not_ready;
	uint64_t run = now - s->started_ms;
	char what[96];
	int delay;

	/* Its last words come before the news of its exit. */
	drain_output(s, now, 1 << 20);
	svclog_flush(&s->log, now);
	describe_status(status, what, sizeof(what));
	log_msg(was == SVC_STOPPING || stopping_all ? LOG_INFO : LOG_WARNING,
		"%s: %s after %llu.%01llu s", s->def->name, what,
		(unsigned long long)run / 1000, (unsigned long long)(run % 1000) / 100);
	s->pid = 0;
	s->not_ready = false;
	if (stopping_all) {
		svc_set_state(s, SVC_WAITING, now, false, 0);
		return;
	}
	stop_dependents(s, now);
	if (was == SVC_STOPPING && !not_ready) {
		svc_set_state(s, SVC_WAITING, now, false, 0);
		return;
	}
	delay = svc_backoff_next(&s->bo, s->def, run);
	if (delay < 0) {
		svc_exhausted(s, now);
		return;
	}
	svc_set_state(s, SVC_BACKOFF, now, false, (uint64_t)delay * 1000);
	if (s->def->restart_limit)
		log_info("%s: restarting in %d s (restart %u of %u)", s->def->name, delay,
			 s->bo.restarts, s->def->restart_limit);
	else
		log_info("%s: restarting in %d s (restart %u)", s->def->name, delay,
			 s->bo.restarts);
}

bool svc_reaped(pid_t pid, int status)
{
	for (int i = 0; i < nsvc; i++)
		if (pid > 0 && svcs[i].pid == pid) {
			svc_exited(&svcs[i], status, now_ms());
			return true;
		}
	return false;
}

int svc_pollfds(struct pollfd *pfd, int max)
{
	int n = 0;

	/* Every pipe, running or not: an escaped grandchild may still write. */
	for (int i = 0; i < nsvc && n < max; i++)
		if (svcs[i].out_r >= 0)
			pfd[n++] = (struct pollfd){.fd = svcs[i].out_r, .events = POLLIN};
	return n;
}

void svc_handle_pollfds(const struct pollfd *pfd, int n)
{
	uint64_t now = now_ms();

	for (int i = 0; i < n; i++) {
		if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		for (int j = 0; j < nsvc; j++)
			if (svcs[j].out_r == pfd[i].fd)
				drain_output(&svcs[j], now, 64 * 1024);
	}
}

int svc_timeout_ms(void)
{
	uint64_t now = now_ms(), next = UINT64_MAX;

	for (int i = 0; i < nsvc; i++) {
		/* Dropped lines are reported after a second of quiet. */
		uint64_t report = svclog_report_due(&svcs[i].log);

		if (svcs[i].timer_ms && svcs[i].timer_ms < next)
			next = svcs[i].timer_ms;
		if (report && report < next)
			next = report;
	}
	if (shutdown_req.pending)
		return 0;
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now > 3600000 ? 3600000 : next - now);
}

static bool svc_probe(const struct svc *s, char *what, size_t len)
{
	if (s->def->ready_network)
		return netup_check(NETUP_PROC_NET, what, len) > 0;
	snprintf(what, len, "socket %s accepted", s->def->ready_socket);
	return socket_accepts(s->def->ready_socket);
}

static void svc_ready(struct svc *s, const char *what, uint64_t now)
{
	svc_set_state(s, SVC_READY, now, false, 0);
	log_info("%s: ready (%s after %llu ms)", s->def->name, what,
		 (unsigned long long)(now - s->started_ms));
}

/* It started but never became ready: stopped like a service whose dependency went, and
 * its exit counts as a failed run (backoff, limit, on_exhausted). */
static void svc_not_ready(struct svc *s, const char *what, uint64_t now)
{
	if (s->def->ready_network)
		log_error(
			"%s: not ready %u s after its start: the node has no network (%s; "
			"no DHCP answer or no NIC?); dependent services wait; stopping it "
			"(SIGTERM to pid %d) to restart it (ready_timeout in cvminit.conf)",
			s->def->name, s->def->ready_timeout, what, (int)s->pid);
	else
		log_error(
			"%s: not ready %u s after its start: nothing accepts on %s; stopping "
			"it (SIGTERM to pid %d) to restart it (ready_timeout in cvminit.conf)",
			s->def->name, s->def->ready_timeout, s->def->ready_socket,
			(int)s->pid);
	svc_term(s, now);
	s->not_ready = true;
}

void svc_tick(void)
{
	uint64_t now = now_ms();

	for (int i = 0; i < nsvc; i++) {
		struct svc *s = &svcs[i];
		char what[160];

		svclog_report_dropped(&s->log, now);
		if (!s->timer_ms || s->timer_ms > now)
			continue;
		s->timer_ms = 0;
		switch (s->state) {
		case SVC_STARTING:
			if (svc_probe(s, what, sizeof(what)))
				svc_ready(s, what, now);
			else if (s->def->ready_timeout &&
				 now - s->started_ms >=
					 (uint64_t)s->def->ready_timeout * 1000)
				svc_not_ready(s, what, now);
			else
				s->timer_ms = now + SVC_PROBE_MS;
			break;
		case SVC_BACKOFF:
			/* Starts below, or once its dependency is ready again. */
			svc_set_state(s, SVC_WAITING, now, false, 0);
			break;
		case SVC_STOPPING:
			log_warn("%s: still running %d s after SIGTERM: SIGKILL",
				 s->def->name, SVC_STOP_TIMEOUT);
			kill(-s->pid, SIGKILL);
			kill(s->pid, SIGKILL);
			break;
		default:
			break;
		}
	}
	svc_start_ready();
}

bool svc_shutdown_requested(enum power_action *action, char *why, size_t len)
{
	if (!shutdown_req.pending)
		return false;
	shutdown_req.pending = false;
	*action = shutdown_req.action;
	snprintf(why, len, "%s", shutdown_req.why);
	return true;
}

/* The pids in the service's cgroup; -errno when it has none (then only its main process
 * and process group are known). */
static int cgroup_pids(const struct svc *s, pid_t *pids, int max)
{
	static char buf[4096];
	char path[sizeof(s->cgroup) + 16];
	_cleanup_close_ int fd = -1;
	ssize_t len;
	int n = 0;

	if (!s->cgroup[0])
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/cgroup.procs", s->cgroup);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	len = read(fd, buf, sizeof(buf) - 1);
	if (len < 0)
		return -errno;
	buf[len] = '\0';
	for (char *p = buf, *end; *p && n < max; p = end) {
		long pid = strtol(p, &end, 10);
		if (end == p)
			break;
		if (pid > 0)
			pids[n++] = (pid_t)pid;
	}
	return n;
}

/* Signals every process of the service; returns how many it found. */
static int svc_signal_all(const struct svc *s, int sig)
{
	pid_t pids[512];
	int n = cgroup_pids(s, pids, (int)ARRAY_SIZE(pids));

	if (n < 0) {
		if (!s->pid)
			return 0;
		kill(-s->pid, sig);
		kill(s->pid, sig);
		return 1;
	}
	for (int i = 0; i < n; i++)
		kill(pids[i], sig);
	return n;
}

static bool svc_gone(const struct svc *s)
{
	pid_t pid;

	return !s->pid && cgroup_pids(s, &pid, 1) <= 0;
}

/* Reaps and drains output until every pending service is gone or the deadline passes. */
static bool stop_wait(bool *pending, uint64_t start, uint64_t deadline)
{
	const struct timespec tick = {.tv_nsec = 20 * 1000 * 1000};

	for (;;) {
		uint64_t now = now_ms();
		bool left = false;
		int status;
		pid_t pid;

		for (int i = 0; i < nsvc; i++)
			drain_output(&svcs[i], now, 64 * 1024);
		/* Orphans are reaped too; the shutdown path after this counts nothing. */
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			svc_reaped(pid, status);
		for (int i = 0; i < nsvc; i++) {
			if (!pending[i])
				continue;
			if (!svc_gone(&svcs[i])) {
				left = true;
				continue;
			}
			pending[i] = false;
			log_info("shutdown: %s stopped after %llu ms", svcs[i].def->name,
				 (unsigned long long)(now - start));
		}
		if (!left)
			return true;
		if (now >= deadline)
			return false;
		nanosleep(&tick, NULL);
	}
}

static int cgroup_kill(const struct svc *s)
{
	char path[sizeof(s->cgroup) + 16];
	_cleanup_close_ int fd = -1;

	if (!s->cgroup[0])
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/cgroup.kill", s->cgroup);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1", 1) != 1)
		return -errno;
	return 0;
}

static void stop_level(const int *depth, int level, unsigned timeout_s)
{
	uint64_t start = now_ms();
	bool pending[SVC_MAX] = {false};
	bool any = false;

	for (int i = 0; i < nsvc; i++) {
		struct svc *s = &svcs[i];
		int n;

		if (depth[i] != level || svc_gone(s))
			continue;
		n = svc_signal_all(s, SIGTERM);
		log_info("shutdown: stopping %s (pid %d): SIGTERM to %d process%s",
			 s->def->name, (int)s->pid, n, n == 1 ? "" : "es");
		pending[i] = any = true;
	}
	if (!any || stop_wait(pending, start, start + timeout_s * 1000ULL))
		return;
	for (int i = 0; i < nsvc; i++) {
		pid_t pids[512];
		int n;

		if (!pending[i])
			continue;
		n = cgroup_pids(&svcs[i], pids, (int)ARRAY_SIZE(pids));
		if (cgroup_kill(&svcs[i]) == 0) {
			log_warn(
				"shutdown: %s still running after %u s: killed %d process%s "
				"(cgroup.kill)",
				svcs[i].def->name, timeout_s, n, n == 1 ? "" : "es");
		} else {
			n = svc_signal_all(&svcs[i], SIGKILL);
			log_warn(
				"shutdown: %s still running after %u s: killed %d process%s "
				"(SIGKILL)",
				svcs[i].def->name, timeout_s, n, n == 1 ? "" : "es");
		}
	}
	/* SIGKILL cannot be ignored: a second is plenty for the kernel to finish it. */
	stop_wait(pending, start, now_ms() + 1000);
}

void svc_stop_all(unsigned timeout_s)
{
	int depth[SVC_MAX] = {0}, max_depth, cycle;
	uint64_t now = now_ms();

	if (!nsvc)
		return;
	stopping_all = true;
	/* Dependents first: kubelet (after containerd) goes before containerd. The parser
	 * refused cycles. */
	max_depth = config_depths(config, depth, &cycle);
	if (max_depth < 0)
		max_depth = 0;
	for (int level = max_depth; level >= 0; level--)
		stop_level(depth, level, timeout_s);

	now = now_ms();
	for (int i = 0; i < nsvc; i++) {
		svclog_flush(&svcs[i].log, now);
		svclog_close(&svcs[i].log);
		if (svcs[i].cgroup[0])
			rmdir(svcs[i].cgroup);
	}
}

/* Pipe ends must not land on 0-2: a PID 1 started without a console has those closed, and
 * the child's dup2 onto them would then be a no-op that keeps O_CLOEXEC. */
static int fd_above_stdio(int fd)
{
	int nfd;

	if (fd > STDERR_FILENO)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
	close(fd);
	return nfd;
}

static int svc_setup(struct svc *s, const struct svc_def *d, const char *cgroup_root,
		     uint64_t now)
{
	int p[2], e = 0;
	bool path_set = false;

	*s = (struct svc){.def = d, .state = SVC_WAITING, .out_r = -1, .out_w = -1};
	if (pipe2(p, O_CLOEXEC) < 0)
		return log_errno(-errno, "%s: output pipe", d->name);
	s->out_r = fd_above_stdio(p[0]);
	s->out_w = fd_above_stdio(p[1]);
	if (s->out_r < 0 || s->out_w < 0)
		return log_errno(-EMFILE, "%s: output pipe", d->name);
	/* Only our end is non-blocking: a service that outpaces us waits, it does not
	 * see EAGAIN. */
	fcntl(s->out_r, F_SETFL, O_NONBLOCK);

	for (int i = 0; i < d->nenv; i++) {
		s->envp[e++] = d->envp[i];
		path_set |= startswith(d->envp[i], "PATH=") != NULL;
	}
	if (!path_set)
		s->envp[e++] = (char *)SVC_DEFAULT_PATH;
	s->envp[e] = NULL;

	if (cgroup_root) {
		snprintf(s->cgroup, sizeof(s->cgroup), "%s/%s", cgroup_root, d->name);
		if (mkdir(s->cgroup, 0755) < 0 && errno != EEXIST) {
			log_warn_errno(-errno,
				       "%s: create cgroup %s (running without one)",
				       d->name, s->cgroup);
			s->cgroup[0] = '\0';
		}
	}
	svc_backoff_reset(&s->bo, d);
	svclog_init(&s->log, d->name, now);
	return 0;
}

int svc_init(const struct config *c, const struct svc_paths *paths)
{
	static const struct svc_paths defaults = {
		.cgroup_root = "/sys/fs/cgroup",
		.log_dir = "/var/log",
		.kmsg = "/dev/kmsg",
	};
	const char *cgroup_root = NULL;
	uint64_t now = now_ms();
	struct statfs sfs;
	int r;

	if (!paths)
		paths = &defaults;
	config = c;
	if (statfs(paths->cgroup_root, &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC)
		cgroup_root = paths->cgroup_root;
	else if (c->nsvc)
		log_warn(
			"services: %s is not cgroup2: services run without a cgroup each "
			"and are stopped by process group",
			paths->cgroup_root);
	svclog_setup(paths->log_dir, paths->kmsg);

	for (nsvc = 0; nsvc < c->nsvc; nsvc++)
		if ((r = svc_setup(&svcs[nsvc], &c->svc[nsvc], cgroup_root, now)) < 0)
			return r;
	log_info("services: %d configured, cgroups under %s, logs in %s", nsvc,
		 cgroup_root ? cgroup_root : "(none)", paths->log_dir);
	return nsvc;
}
