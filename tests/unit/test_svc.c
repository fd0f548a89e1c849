/* The service restart policy: the backoff sequence, its reset after a stable run, and
 * the restart limit that hands over to on_exhausted. */
#include "../../init/svc.h"
#include "harness.h"

static struct svc_def def(unsigned min, unsigned max, unsigned stable, unsigned limit)
{
	return (struct svc_def){ .backoff_min = min, .backoff_max = max, .stable_secs = stable,
				 .restart_limit = limit, .after_mask = 0 };
}

TEST(svc_backoff_doubles_to_max)
{
	struct svc_def d = def(1, 30, 60, 0);
	static const int want[] = { 1, 2, 4, 8, 16, 30, 30, 30 };
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
