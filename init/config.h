/* /etc/cvminit/cvminit.conf: settings, extra modules and the services PID 1 supervises.
 * Parsed once into fixed-size tables, so the supervisor loop never allocates. */
#pragma once

#include <stddef.h>

#include "settings.h"

#define CONFIG_PATH	  "/etc/cvminit/cvminit.conf"
#define SVC_MAX		  8
#define SVC_NAME_MAX	  32
#define SVC_ARGV_MAX	  48
#define SVC_ENV_MAX	  24
#define CONFIG_MODULE_MAX 32
#define CONFIG_ARENA	  16384
#define CONFIG_ERR_MAX	  320
#define CONFIG_SIZE_MAX	  65536 /* bytes of the file */

/* What happens when a service has used up its restarts. */
enum svc_exhausted {
	SVC_EXHAUSTED_POWEROFF,
	SVC_EXHAUSTED_REBOOT,
	SVC_EXHAUSTED_HALT,
	SVC_EXHAUSTED_STOP, /* leave it stopped, keep the node up */
};

struct svc_def {
	char name[SVC_NAME_MAX];
	char *argv[SVC_ARGV_MAX + 1]; /* NULL-terminated, strings in the arena */
	char *envp[SVC_ENV_MAX + 1];
	int nargv, nenv;
	char ready_socket[108]; /* ready when this unix socket accepts; "" = at start */
	bool ready_network;	/* ready when the node has an address and a default
				       * route (netup.c); never together with ready_socket */
	unsigned after_mask;	/* bit i: starts only once service i is ready */
	unsigned backoff_min;	/* seconds before the first restart */
	unsigned backoff_max;	/* the delay doubles up to this */
	unsigned stable_secs;	/* a run this long resets the backoff */
	unsigned restart_limit; /* restarts in a row before on_exhausted; 0 = never */
	unsigned
		ready_timeout; /* s to wait for ready_socket, then a failed run; 0 = ever */
	bool ready_timeout_set; /* given in the file (it needs a ready socket) */
	enum svc_exhausted on_exhausted;
	/* Starts without waiting for the config's modules and the sysctl.d keys that exist
	 * only once they are loaded (it uses neither: containerd, dhcpcd). */
	bool early;
	int line; /* where the service was declared */
};

struct config {
	struct svc_def svc[SVC_MAX];
	int nsvc;
	char *modules[CONFIG_MODULE_MAX];
	int nmodules;
	char arena[CONFIG_ARENA];
	size_t used;
};

/* Parses the text of a config file (name is used in messages). Settings given with
 * "set" are applied to s. Returns 0, or a negative errno with err set to
 * "<name>:<line>: <what is wrong>". The result is complete or not used at all. */
int config_parse(struct config *c, struct settings *s, const char *text, const char *name,
		 char *err, size_t errlen);

/* Each service's dependency depth (0: after nothing; else 1 + the deepest of its
 * afters) into depth[c->nsvc]. Returns the deepest, or -ELOOP with *cycle set to a
 * service on a cycle. */
int config_depths(const struct config *c, int *depth, int *cycle);

/* The service by name, or NULL. */
const struct svc_def *config_service(const struct config *c, const char *name);
const char *svc_exhausted_to_string(enum svc_exhausted e);
