/* The service restart policy: the backoff sequence, its reset after a stable run, and
 * the restart limit that hands over to on_exhausted. */
#include "../../init/svc.h"
#include "harness.h"

static struct svc_def def(unsigned min, unsigned max, unsigned stable, unsigned limit)
{
	return (struct svc_def){.backoff_min = min,
				.backoff_max = max,
				.stable_secs = stable,
				.restart_limit = limit,
				.after_mask = 0};
}

TEST(svc_backoff_doubles_to_max)
{
	struct svc_def d = def(1, 30, 60, 0);
	static const int want[] = {1, 2, 4, 8, 16, 30, 30, 30};
	struct svc_backoff b;

	svc_backoff_reset(&b, &d);
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		CHECK_INT(svc_backoff_next(&b, &d, 100), want[i]);
	CHECK_INT(b.restarts, ARRAY_SIZE(want));
}

TEST(svc_backoff_max_not_power_of_two)
{
	struct svc_def d = def(3, 10, 60, 0);
	struct svc_backoff b;

	svc_backoff_reset(&b, &d);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 3);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 6);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 10);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 10);
}

TEST(svc_backoff_stable_run_resets)
{
	struct svc_def d = def(1, 30, 60, 5);
	struct svc_backoff b;

	svc_backoff_reset(&b, &d);
	CHECK_INT(svc_backoff_next(&b, &d, 500), 1);
	CHECK_INT(svc_backoff_next(&b, &d, 500), 2);
	CHECK_INT(svc_backoff_next(&b, &d, 500), 4);
	/* 59.999 s is not stable, 60 s is. */
	CHECK_INT(svc_backoff_next(&b, &d, 59999), 8);
	CHECK_INT(b.restarts, 4);
	CHECK_INT(svc_backoff_next(&b, &d, 60000), 1);
	CHECK_INT(b.restarts, 1);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 2);
}

TEST(svc_restart_limit)
{
	struct svc_def d = def(1, 30, 60, 3);
	struct svc_backoff b;

	svc_backoff_reset(&b, &d);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 1);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 2);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 4);
	/* Three restarts in a row used: the fourth exit exhausts, and stays exhausted. */
	CHECK_INT(svc_backoff_next(&b, &d, 0), -1);
	CHECK_INT(svc_backoff_next(&b, &d, 0), -1);
	CHECK_INT(b.restarts, 3);
}

TEST(svc_restart_limit_resets_after_stable_run)
{
	struct svc_def d = def(1, 30, 10, 2);
	struct svc_backoff b;

	svc_backoff_reset(&b, &d);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 1);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 2);
	/* The count is of restarts in a row: a stable run starts it over. */
	CHECK_INT(svc_backoff_next(&b, &d, 10000), 1);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 2);
	CHECK_INT(svc_backoff_next(&b, &d, 0), -1);
}

TEST(svc_restart_unlimited)
{
	struct svc_def d = def(1, 2, 60, 0);
	struct svc_backoff b;

	svc_backoff_reset(&b, &d);
	for (int i = 0; i < 10000; i++)
		CHECK(svc_backoff_next(&b, &d, 0) > 0);
	CHECK_INT(svc_backoff_next(&b, &d, 0), 2);
}

TEST(svc_backoff_no_overflow)
{
	struct svc_def d = def(300, 300, 3600, 0);
	struct svc_backoff b;

	svc_backoff_reset(&b, &d);
	for (int i = 0; i < 100; i++)
		CHECK_INT(svc_backoff_next(&b, &d, 0), 300);
}

/* Every transition svc.c makes, with the timer the new state arms (svc_set_state). */
TEST(svc_transitions_waiting)
{
	CHECK(svc_transition_ok(SVC_WAITING, SVC_STARTING)); /* started, with a probe */
	CHECK(svc_transition_ok(SVC_WAITING, SVC_READY));    /* started, no probe */
	CHECK(svc_transition_ok(SVC_WAITING, SVC_BACKOFF));  /* fork failed */
	CHECK(svc_transition_ok(SVC_WAITING,
				SVC_DOWN)); /* fork failed, no restarts left */
	CHECK(!svc_transition_ok(SVC_WAITING, SVC_STOPPING)); /* nothing runs to stop */
	CHECK(!svc_transition_ok(SVC_WAITING, SVC_WAITING));
}

TEST(svc_transitions_starting)
{
	CHECK(svc_transition_ok(SVC_STARTING, SVC_READY)); /* the probe succeeded */
	CHECK(svc_transition_ok(SVC_STARTING,
				SVC_STOPPING)); /* ready_timeout, or dependency */
	CHECK(svc_transition_ok(SVC_STARTING, SVC_BACKOFF)); /* exited */
	CHECK(svc_transition_ok(SVC_STARTING, SVC_DOWN));
	CHECK(svc_transition_ok(SVC_STARTING,
				SVC_WAITING)); /* exited while stopping all */
	CHECK(!svc_transition_ok(SVC_STARTING, SVC_STARTING));
}

TEST(svc_transitions_ready)
{
	CHECK(svc_transition_ok(SVC_READY, SVC_STOPPING)); /* its dependency went */
	CHECK(svc_transition_ok(SVC_READY, SVC_BACKOFF));
	CHECK(svc_transition_ok(SVC_READY, SVC_DOWN));
	CHECK(svc_transition_ok(SVC_READY, SVC_WAITING));
	CHECK(!svc_transition_ok(SVC_READY, SVC_READY));
	CHECK(!svc_transition_ok(SVC_READY, SVC_STARTING));
}

TEST(svc_transitions_stopping)
{
	CHECK(svc_transition_ok(SVC_STOPPING,
				SVC_WAITING)); /* waits for its dependency */
	CHECK(svc_transition_ok(SVC_STOPPING, SVC_BACKOFF)); /* it missed ready_timeout */
	CHECK(svc_transition_ok(SVC_STOPPING, SVC_DOWN));
	CHECK(!svc_transition_ok(SVC_STOPPING, SVC_READY));
	CHECK(!svc_transition_ok(SVC_STOPPING, SVC_STARTING));
}

TEST(svc_transitions_backoff_and_down)
{
	CHECK(svc_transition_ok(SVC_BACKOFF, SVC_WAITING));
	CHECK(!svc_transition_ok(SVC_BACKOFF,
				 SVC_STARTING)); /* starts from WAITING only */
	CHECK(!svc_transition_ok(SVC_BACKOFF, SVC_READY));
	for (int to = SVC_WAITING; to <= SVC_DOWN; to++)
		CHECK(!svc_transition_ok(SVC_DOWN, (enum svc_state)to));
}

TEST(svc_state_timers)
{
	const uint64_t now = 5000;

	CHECK_INT(svc_state_timer(SVC_STARTING, now, true, 0), now + SVC_PROBE_MS);
	CHECK_INT(svc_state_timer(SVC_STARTING, now, false, 0), 0); /* exec failed */
	CHECK_INT(svc_state_timer(SVC_STOPPING, now, false, 0),
		  now + SVC_STOP_TIMEOUT * 1000);
	CHECK_INT(svc_state_timer(SVC_BACKOFF, now, false, 4000), now + 4000);
	/* Entering any other state clears the timer the last one armed. */
	CHECK_INT(svc_state_timer(SVC_WAITING, now, true, 4000), 0);
	CHECK_INT(svc_state_timer(SVC_READY, now, true, 4000), 0);
	CHECK_INT(svc_state_timer(SVC_DOWN, now, true, 4000), 0);
}
