/* The service supervisor: starts the configured services in dependency order, each in its
 * own cgroup, restarts them with backoff, and stops them (dependents first) at shutdown. */
#pragma once

#include <poll.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "settings.h"
#include "util.h"

#define SVC_PROBE_MS	 100 /* readiness probe interval */
#define SVC_STOP_TIMEOUT 10  /* s between SIGTERM and SIGKILL when a dependency goes */
#define SVC_DEFAULT_PATH                                                                 \
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Where things live; the tests point these into a scratch cgroup and directory. */
struct svc_paths {
	const char
		*cgroup_root; /* a cgroup2 mount (or a cgroup in one): /sys/fs/cgroup */
	const char *log_dir;  /* /var/log */
	const char *kmsg;     /* /dev/kmsg */
};

/* Builds the runtime table from the parsed config (c must outlive it): output pipes,
 * cgroups, environments. paths NULL = the defaults. Nothing is allocated after this.
 * Returns the number of services, or a negative errno. */
int svc_init(const struct config *c, const struct svc_paths *paths);
/* fn runs once, right before the last service that has never run starts for the first
 * time (cvminit measures "ready" there). */
void svc_set_all_started_hook(void (*fn)(void));
/* fn runs once, right before the first service that is not "early" starts: cvminit
 * waits there for the config's modules and sets the sysctl.d keys they bring. */
void svc_set_gate_hook(void (*fn)(void));
/* fn runs right before each start of a service (fork), with its definition: cvminit
 * loads the NIC drivers there, before the service that configures the network. */
void svc_set_prestart_hook(void (*fn)(const struct svc_def *d));
/* Starts every waiting service whose dependency (after=) is ready. */
void svc_start_ready(void);
/* Fills pfd with the fds the loop must watch (service output); returns how many. */
int svc_pollfds(struct pollfd *pfd, int max);
void svc_handle_pollfds(const struct pollfd *pfd, int n);
/* Called for every reaped pid; false = not a service (an orphan, the caller counts it). */
bool svc_reaped(pid_t pid, int status);
/* Milliseconds until the next timer (restart, readiness probe, stop deadline), -1 none. */
int svc_timeout_ms(void);
/* Runs the timers that are due. */
void svc_tick(void);
/* True once when a service used up its restarts and its on_exhausted powers the node
 * off, reboots or halts: says which and why; the supervisor then shuts down. */
bool svc_shutdown_requested(enum power_action *action, char *why, size_t len);
/* Shutdown: dependents first, each SIGTERM to its cgroup, up to timeout_s while reaping,
 * then cgroup.kill. Bounded by (dependency depth + 1) * (timeout_s + 1) seconds. */
void svc_stop_all(unsigned timeout_s);

/* Restart policy, kept apart so it can be tested without processes. */
/* A service's states; svc.c changes them only through svc_set_state(). */
enum svc_state {
	SVC_WAITING,  /* not running: not started yet, or its dependency is not ready */
	SVC_STARTING, /* running, its readiness socket does not accept yet */
	SVC_READY,    /* running and ready: its dependents may start */
	SVC_STOPPING, /* its dependency went away, or it missed its ready_timeout: SIGTERM
		       * sent, waiting for the exit */
	SVC_BACKOFF,  /* exited: the restart timer runs */
	SVC_DOWN,     /* used up its restarts with on_exhausted stop: stays down */
};

/* Whether the supervisor moves a service from one state to the other. */
bool svc_transition_ok(enum svc_state from, enum svc_state to);
/* The deadline a state arms on entry, or 0: the readiness probe (STARTING, when it has a
 * ready socket or network to probe), the SIGKILL after SIGTERM (STOPPING), the restart
 * after delay_ms (BACKOFF). */
uint64_t svc_state_timer(enum svc_state to, uint64_t now, bool probe, uint64_t delay_ms);

struct svc_backoff {
	unsigned delay;	   /* seconds before the next restart */
	unsigned restarts; /* restarts in a row since the last stable run */
};

void svc_backoff_reset(struct svc_backoff *b, const struct svc_def *d);
/* A run of run_ms ended: returns the seconds to wait before the restart, or -1 when the
 * restarts are used up (on_exhausted applies). */
int svc_backoff_next(struct svc_backoff *b, const struct svc_def *d, uint64_t run_ms);
