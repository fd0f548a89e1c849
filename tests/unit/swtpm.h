/* Starts a real swtpm (TPM 2.0 emulator) on loopback for one test process and stops it
 * when the process exits. Skips the test when swtpm is not installed. */
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static pid_t swtpm_pid;
static char swtpm_dir[64];
static char swtpm_conf[64];
/* A CA directory: swtpm_start() then manufactures the vTPM with swtpm_setup and an EK
 * certificate signed by that directory's swtpm_localca CA (the attestation tests). */
static const char *swtpm_ek_ca;

static void swtpm_stop(void)
{
	char cmd[128];

	if (swtpm_pid > 0) {
		kill(swtpm_pid, SIGTERM);
		waitpid(swtpm_pid, NULL, 0);
		swtpm_pid = 0;
	}
	if (swtpm_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", swtpm_dir);
		(void)!system(cmd);
	}
}

static int port_accepts(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* Returns the TCTI configuration string ("host=127.0.0.1,port=N") of a fresh swtpm. */
static const char *swtpm_start(void)
{
	/* Distinct ports per test process, so tests may run in parallel; below Linux's
	 * ephemeral range (32768-60999), where a client socket in TIME-WAIT (thousands after a
	 * test run) would make swtpm's bind fail with "Address already in use". */
	int port = 20000 + (getpid() % 6000) * 2;
	char server[64], ctrl[64], state[96];

	if (access("/usr/bin/swtpm", X_OK) != 0)
		SKIP("swtpm is not installed (apt-get install swtpm)");
	snprintf(swtpm_dir, sizeof(swtpm_dir), "/tmp/cvminit-swtpm.%d", (int)getpid());
	mkdir(swtpm_dir, 0700);
	snprintf(server, sizeof(server), "type=tcp,port=%d,bindaddr=127.0.0.1", port);
	snprintf(ctrl, sizeof(ctrl), "type=tcp,port=%d,bindaddr=127.0.0.1", port + 1);
	snprintf(state, sizeof(state), "dir=%s", swtpm_dir);
	if (swtpm_ek_ca) {
		char cmd[1024];

		snprintf(
			cmd, sizeof(cmd),
			"set -e; mkdir -p %1$s; "
			"printf 'statedir = %1$s\\nsigningkey = %1$s/signkey.pem\\n"
			"issuercert = %1$s/issuercert.pem\\ncertserial = %1$s/certserial\\n' "
			"> %2$s/localca.conf; "
			"printf 'create_certs_tool = /usr/bin/swtpm_localca\\n"
			"create_certs_tool_config = %2$s/localca.conf\\n"
			"create_certs_tool_options = /etc/swtpm-localca.options\\n' > %2$s/setup.conf; "
			"swtpm_setup --tpm2 --tpmstate %2$s --create-ek-cert --pcr-banks "
			"sha1,sha256,sha384,sha512 --config %2$s/setup.conf --overwrite >/dev/null 2>&1",
			swtpm_ek_ca, swtpm_dir);
		if (system(cmd) != 0)
			FAIL_AT("swtpm_setup --create-ek-cert failed (%s)", cmd);
	}

	swtpm_pid = fork();
	if (swtpm_pid == 0) {
		/* Not the test's stdout: a runner reading it would wait for swtpm too. */
		int null = open("/dev/null", O_RDWR);
		/* And gone with the test process even when that one crashes. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		execl("/usr/bin/swtpm", "swtpm", "socket", "--tpm2", "--server", server,
		      "--ctrl", ctrl, "--tpmstate", state, "--flags",
		      "not-need-init,startup-clear", (char *)NULL);
		_exit(127);
	}
	atexit(swtpm_stop);
	for (int i = 0; i < 100 && !port_accepts(port); i++)
		usleep(50 * 1000);
	if (!port_accepts(port))
		FAIL_AT("swtpm did not listen on port %d", port);
	snprintf(swtpm_conf, sizeof(swtpm_conf), "host=127.0.0.1,port=%d", port);
	return swtpm_conf;
}
