/* The config parser: a full example, defaults, and every rejection with file:line. */
#include <errno.h>

#include "../../init/config.h"
#include "harness.h"

static struct config c;
static struct settings s;
static char err[CONFIG_ERR_MAX];

static int parse(const char *text)
{
	settings_init(&s);
	err[0] = '\0';
	return config_parse(&c, &s, text, "cvminit.conf", err, sizeof(err));
}

static const char example[] =
	"# node services\n"
	"set shutdown_timeout=20\n"
	"module br_netfilter\n"
	"module overlay\n"
	"\n"
	"service containerd\n"
	"\texec /usr/bin/containerd --config /etc/containerd/config.toml\n"
	"\tenv PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
	"\tready socket /run/containerd/containerd.sock\n"
	"\trestart 1 30\n"
	"\tready_timeout 60\n"
	"\n"
	"service kubelet   # after containerd is ready\n"
	"\tafter containerd\n"
	"\texec /usr/bin/kubelet \"--node-labels=a=b c\" --v=2\n"
	"\tlimit 0\n"
	"\tstable 120\n"
	"\ton_exhausted stop\n";

TEST(config_example)
{
	CHECK_INT(parse(example), 0);
	CHECK_INT(s.shutdown_timeout, 20);
	CHECK_INT(c.nmodules, 2);
	CHECK_STR(c.modules[1], "overlay");
	CHECK_INT(c.nsvc, 2);

	const struct svc_def *d = config_service(&c, "containerd");
	CHECK(d != NULL);
	CHECK_INT(d->nargv, 3);
	CHECK_STR(d->argv[0], "/usr/bin/containerd");
	CHECK_STR(d->argv[2], "/etc/containerd/config.toml");
	CHECK(d->argv[3] == NULL);
	CHECK_STR(d->envp[0], "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
	CHECK(d->envp[1] == NULL);
	CHECK_STR(d->ready_socket, "/run/containerd/containerd.sock");
	CHECK_INT(d->ready_timeout, 60);
	CHECK_INT(d->after_mask, 0);
	CHECK(!d->ready_network);
	CHECK_INT(d->line, 6);

	d = config_service(&c, "kubelet");
	CHECK_INT(d->after_mask, 1u << 0);
	CHECK_STR(d->argv[1], "--node-labels=a=b c");
	CHECK_INT(d->restart_limit, 0);
	CHECK_INT(d->stable_secs, 120);
	CHECK_INT(d->on_exhausted, SVC_EXHAUSTED_STOP);
	CHECK_STR(d->ready_socket, "");
	CHECK(config_service(&c, "nope") == NULL);
}

/* The node's own shape: kubelet after two services, one of them ready on the network. */
TEST(config_after_several_and_ready_network)
{
	CHECK_INT(
		parse("service network\n\texec /usr/sbin/dhcpcd -B\n\tready network\n"
		      "\tready_timeout 45\n\tlimit 0\n"
		      "service containerd\n\texec /c\n\tready socket /run/c.sock\n"
		      "service kubelet\n\tafter containerd\n\tafter network\n\texec /k\n"
		      "service probe\n\tafter kubelet network\n\texec /p\n"),
		0);
	const struct svc_def *n = config_service(&c, "network");
	CHECK(n->ready_network);
	CHECK_STR(n->ready_socket, "");
	CHECK_INT(n->ready_timeout, 45);
	CHECK_INT(config_service(&c, "containerd")->ready_network, 0);
	CHECK_INT(config_service(&c, "kubelet")->after_mask, (1u << 0) | (1u << 1));
	CHECK_INT(config_service(&c, "probe")->after_mask, (1u << 2) | (1u << 0));
	int depth[SVC_MAX], cycle = -1;
	CHECK_INT(config_depths(&c, depth, &cycle), 2);
	CHECK_INT(depth[0], 0);
	CHECK_INT(depth[1], 0);
	CHECK_INT(depth[2], 1);
	CHECK_INT(depth[3], 2);
}

TEST(config_defaults)
{
	CHECK_INT(parse("service a\nexec /bin/a\n"), 0);
	const struct svc_def *d = &c.svc[0];
	CHECK_INT(d->backoff_min, 1);
	CHECK_INT(d->backoff_max, 30);
	CHECK_INT(d->stable_secs, 60);
	CHECK_INT(d->restart_limit, 10);
	CHECK_INT(d->ready_timeout, 120);
	CHECK_INT(d->on_exhausted, SVC_EXHAUSTED_POWEROFF);
	CHECK_INT(d->nenv, 0);
	CHECK(d->envp[0] == NULL);
	CHECK(!d->early);
}

/* "early": this service only, no argument, once. */
TEST(config_early)
{
	CHECK_INT(parse("service a\n\tearly\n\texec /a\nservice b\n\texec /b\n"), 0);
	CHECK(config_service(&c, "a")->early);
	CHECK(!config_service(&c, "b")->early);
	CHECK_INT(parse("service a\n\texec /a\n\tearly\n\tearly\n"), -EEXIST);
	CHECK(strstr(err, "cvminit.conf:4: service a: early is given twice") != NULL);
	CHECK_INT(parse("service a\n\texec /a\n\tearly yes\n"), -EINVAL);
	CHECK(strstr(err, "\"early\" takes 0 arguments, got 1") != NULL);
	CHECK_INT(parse("early\nservice a\n\texec /a\n"), -EINVAL);
}

TEST(config_empty_and_comments)
{
	CHECK_INT(parse(""), 0);
	CHECK_INT(parse("# only a comment\n\n   \n\t# indented\n"), 0);
	CHECK_INT(c.nsvc, 0);
}

struct bad {
	const char *text;
	int r;
	const char *msg;
};

static const struct bad bad_configs[] = {
	{"bogus 1\n", -EINVAL, "cvminit.conf:1: unknown directive \"bogus\""},
	{"\n\nexec /bin/x\n", -EINVAL,
	 "cvminit.conf:3: \"exec\" outside a service block"},
	{"service A\nexec /x\n", -EINVAL, "cvminit.conf:1: service name \"A\""},
	{"service a\nexec /x\nservice a\nexec /y\n", -EEXIST,
	 "cvminit.conf:3: service a is declared twice"},
	{"service a\nexec x\n", -EINVAL,
	 "cvminit.conf:2: exec: \"x\" is not an absolute path"},
	{"service a\nexec /x\nexec /y\n", -EEXIST,
	 "cvminit.conf:3: service a: exec is given twice"},
	{"service a\nexec\n", -EINVAL, "cvminit.conf:2: exec needs a command"},
	{"service a\n", -EINVAL, "cvminit.conf:1: service a has no exec line"},
	{"service a\nexec /x\nafter b\n", -ENOENT,
	 "cvminit.conf:1: service a: after names b, which is not declared"},
	{"service a\nexec /x\nafter a\n", -ELOOP, "service a: cannot come after itself"},
	{"service a\nexec /x\nafter b\nservice b\nexec /y\nafter a\n", -ELOOP,
	 "the after chain is a cycle"},
	{"service a\nexec /x\nafter b\nafter b\nservice b\nexec /y\n", -EEXIST,
	 "cvminit.conf:4: service a: after names b twice"},
	{"service a\nexec /x\nafter b c b\n", -EEXIST, "service a: after names b twice"},
	{"service a\nexec /x\nafter b\nservice b\nexec /y\nafter c\nservice c\nexec /z\n"
	 "after d a\nservice d\nexec /w\n",
	 -ELOOP, "the after chain is a cycle"},
	{"service a\nexec /x\nready network\nready socket /s\n", -EEXIST,
	 "cvminit.conf:4: service a: ready is given twice"},
	{"service a\nexec /x\nready network now\n", -EINVAL, "is not a readiness kind"},
	{"service a\nexec /x\nenv 1A=b\n", -EINVAL, "env takes NAME=value"},
	{"service a\nexec /x\nenv novalue\n", -EINVAL, "env takes NAME=value"},
	{"service a\nexec /x\nenv A=1\nenv A=2\n", -EEXIST, "A is set twice"},
	{"service a\nexec /x\nready file /x\n", -EINVAL, "is not a readiness kind"},
	{"service a\nexec /x\nready socket run/x\n", -EINVAL, "must be an absolute path"},
	{"service a\nexec /x\nrestart 5 2\n", -EINVAL,
	 "first delay 5 s is above the maximum 2 s"},
	{"service a\nexec /x\nrestart 0 2\n", -EINVAL,
	 "restart delay: \"0\" is not a whole number from 1 to 300"},
	{"service a\nexec /x\nrestart 1 2s\n", -EINVAL, "\"2s\" is not a whole number"},
	{"service a\nexec /x\nrestart 1\n", -EINVAL,
	 "\"restart\" takes 2 arguments, got 1"},
	{"service a\nexec /x\nlimit -1\n", -EINVAL,
	 "limit: \"-1\" is not a whole number"},
	{"service a\nexec /x\nready_timeout 5\n", -EINVAL,
	 "cvminit.conf:1: service a: ready_timeout needs a \"ready socket\" or \"ready "
	 "network\" line"},
	{"service a\nexec /x\nready socket /s\nready_timeout 5\nready_timeout 6\n",
	 -EEXIST, "cvminit.conf:5: service a: ready_timeout is given twice"},
	{"service a\nexec /x\nready socket /s\nready_timeout 3601\n", -EINVAL,
	 "ready_timeout: \"3601\" is not a whole number from 0 to 3600"},
	{"service a\nexec /x\non_exhausted explode\n", -EINVAL,
	 "on_exhausted: \"explode\" is not poweroff, reboot, halt or stop"},
	{"set on_failure=explode\n", -EINVAL,
	 "cvminit.conf:1: cvminit.on_failure=explode: invalid value"},
	{"set bogus=1\n", -EINVAL, "unknown setting cvminit.bogus"},
	{"set on_failure\n", -EINVAL, "set takes key=value"},
	{"module ../evil\n", -EINVAL, "\"../evil\" is not a module name"},
	{"service a\nexec \"/x\n", -EINVAL, "cvminit.conf:2: unterminated quote"},
};

TEST(config_rejections_name_file_line_and_value)
{
	for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
		const struct bad *b = &bad_configs[i];
		int r = parse(b->text);
		if (r != b->r || !strstr(err, b->msg))
			FAIL_AT("config #%zu: got %d \"%s\", expected %d containing \"%s\"",
				i, r, err, b->r, b->msg);
		/* Nothing of a rejected config is kept. */
		CHECK_INT(c.nsvc, 0);
		CHECK_INT(c.nmodules, 0);
	}
}

TEST(config_rejected_settings_are_rolled_back)
{
	CHECK_INT(parse("set shutdown_timeout=42\nset on_failure=explode\n"), -EINVAL);
	CHECK_INT(s.shutdown_timeout, 10);
}

TEST(config_limits)
{
	char text[8192] = "";

	for (int i = 0; i <= SVC_MAX; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
			 "service s%d\nexec /bin/s\n", i);
	CHECK_INT(parse(text), -E2BIG);
	CHECK_CONTAINS(err, "too many services");

	strcpy(text, "service a\nexec /x");
	for (int i = 0; i < SVC_ARGV_MAX; i++)
		strcat(text, " a");
	CHECK_INT(parse(text), -E2BIG);

	memset(text, 'x', 3000);
	text[3000] = '\0';
	CHECK_INT(parse(text), -E2BIG);
	CHECK_CONTAINS(err, "cvminit.conf:1: line longer than");
}

TEST(config_cmdline_overrides_config)
{
	char serr[SETTINGS_ERR_MAX];

	/* As in PID 1: the command line first (on_failure given once there), then the
	 * config, then settings_cmdline_wins() over it. */
	settings_init(&s);
	CHECK_INT(cmdline_parse(&s, "cvminit.on_failure=halt", serr, sizeof(serr)), 1);
	settings_next_source(&s);
	CHECK_INT(config_parse(&c, &s, "set on_failure=reboot\nset shutdown_timeout=20\n",
			       "cvminit.conf", err, sizeof(err)),
		  0);
	CHECK_INT(s.on_failure, POWER_REBOOT);
	settings_cmdline_wins(&s, "cvminit.on_failure=halt");
	CHECK_INT(s.on_failure, POWER_HALT);
	CHECK_INT(s.shutdown_timeout, 20); /* the command line does not name it */
}

TEST(config_shipped_node_config)
{
	/* The config the image ships (rootfs-overlay/) parses and says what the node does. */
	static char text[65536];
	FILE *f = fopen("rootfs-overlay/etc/cvminit/cvminit.conf", "r");

	CHECK(f != NULL);
	text[fread(text, 1, sizeof(text) - 1, f)] = '\0';
	fclose(f);
	CHECK_INT(parse(text), 0);
	const struct svc_def *ctd = config_service(&c, "containerd");
	const struct svc_def *kubelet = config_service(&c, "kubelet");
	CHECK(ctd && kubelet);
	CHECK_STR(ctd->ready_socket, "/run/containerd/containerd.sock");
	const struct svc_def *net = config_service(&c, "network");
	CHECK(net && net->ready_network && net->restart_limit == 0);
	/* kubelet only after the join: its ready socket is made once the bootstrap
	 * kubeconfig is in place (docs/attestation.md, "Join"). */
	const struct svc_def *join = config_service(&c, "join");
	CHECK(join && join->restart_limit == 0 && join->ready_timeout == 0);
	CHECK_STR(join->ready_socket, "/run/cvminit/join.sock");
	CHECK_INT(join->after_mask, 1u << (net - c.svc));
	CHECK_INT(kubelet->after_mask,
		  (1u << (ctd - c.svc)) | (1u << (net - c.svc)) | (1u << (join - c.svc)));
	CHECK_STR(kubelet->argv[0], "/usr/bin/kubelet");
	CHECK_INT(kubelet->restart_limit, 0);
	/* containerd starts first, and with dhcpcd before the networking modules are in;
	 * kubelet (CNI, kube-proxy) and the rest after them. */
	CHECK(ctd == &c.svc[0]);
	CHECK(ctd->early && net->early && !kubelet->early);
	CHECK(!config_service(&c, "attest")->early);
}
