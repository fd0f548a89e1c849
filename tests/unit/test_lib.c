/* lib/: the log sink the program sets, hex spelling, the streaming digest against the
 * one-shot one, the file helpers' edges, and the command-line word splitter. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../lib/cmdline.h"
#include "../../lib/digest.h"
#include "../../lib/file.h"
#include "../../lib/hex.h"
#include "../../lib/log.h"
#include "../../lib/net.h"
#include "../../lib/secret.h"
#include "harness.h"

static char seen[256];
static int seen_level = -1;

static void capture(int level, const char *text)
{
	seen_level = level;
	snprintf(seen, sizeof(seen), "%s", text);
}

TEST(log_goes_to_the_sink_the_program_sets)
{
	log_set_sink(capture);
	log_set_max_level(LOG_INFO);
	log_warn("tpm: %s", "gone");
	CHECK_STR(seen, "tpm: gone");
	CHECK_INT(seen_level, LOG_WARNING);
	/* Above the maximum level nothing reaches the sink. */
	log_debug("not shown");
	CHECK_STR(seen, "tpm: gone");
	CHECK_INT(log_errno(-ENOENT, "open %s", "x"), -ENOENT);
	CHECK_STR(seen, "open x: No such file or directory");
	log_set_sink(NULL);
}

TEST(hex_is_lower_spelling)
{
	CHECK(hex_is_lower("00ff", 4));
	CHECK(!hex_is_lower("00FF", 4));
	CHECK(!hex_is_lower("00ff0", 4));
	CHECK(!hex_is_lower("00f", 4));
	CHECK(!hex_is_lower("00fg", 4));
}

TEST(digest_streaming_matches_one_shot)
{
	static const uint16_t algs[] = {DIGEST_ALG_SHA1, DIGEST_ALG_SHA256,
					DIGEST_ALG_SHA384, DIGEST_ALG_SHA512};
	uint8_t data[1000], a[DIGEST_MAX], b[DIGEST_MAX];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		struct digest_ctx c;
		int n = digest_compute(algs[i], data, sizeof(data), a);

		CHECK(n > 0);
		CHECK_INT(digest_begin(&c, algs[i]), 0);
		CHECK_INT(digest_update(&c, data, 1), 0);
		CHECK_INT(digest_update(&c, data + 1, 0), 0);
		CHECK_INT(digest_update(&c, data + 1, sizeof(data) - 1), 0);
		CHECK_INT(digest_end(&c, b), n);
		CHECK(memcmp(a, b, (size_t)n) == 0);
		digest_ctx_free(&c); /* after digest_end: nothing left to free */
	}
	struct digest_ctx c;
	CHECK_INT(digest_begin(&c, 0x0012), -EOPNOTSUPP);
	digest_ctx_free(&c);
}

TEST(file_text_edges)
{
	char dir[] = "/tmp/cvm-lib-XXXXXX", path[64], buf[8];
	uint8_t *all = NULL;
	size_t len = 0;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/v", dir);
	CHECK_INT(read_file_text(path, buf, sizeof(buf)), -ENOENT);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_INT(write_full(fd, "1234567", 7), 0);
	close(fd);
	/* Seven bytes fit in eight with the NUL; eight do not. */
	CHECK_INT(read_file_text(path, buf, sizeof(buf)), 7);
	CHECK_STR(buf, "1234567");
	CHECK_INT(write_file_text(path, "12345678"), 0);
	CHECK_INT(read_file_text(path, buf, sizeof(buf)), -EFBIG);
	CHECK_INT(read_file_bytes(path, buf, sizeof(buf)), 8);
	CHECK_INT(read_file_alloc(path, false, 1 << 20, &all, &len), 0);
	CHECK_INT(len, 8);
	CHECK_STR((char *)all, "12345678");
	free(all);
	CHECK_INT(read_file_alloc(path, false, 4, &all, &len), -EFBIG);
	CHECK_INT(read_file_alloc(dir, true, 1 << 20, &all, &len), -EISDIR);
	CHECK_INT(read_file_alloc("/dev/null", false, 1 << 20, &all, &len), -EINVAL);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	CHECK_INT(pread_full(fd, buf, 4, 6), -EIO); /* only two bytes left at 6 */
	CHECK_INT(pwrite_full(fd, "ab", 2, 6), 0);
	CHECK_INT(pread_full(fd, buf, 2, 6), 0);
	CHECK(memcmp(buf, "ab", 2) == 0);
	close(fd);
	unlink(path);
	rmdir(dir);
}

TEST(cmdline_words_like_the_kernel)
{
	const char *p = "  a=\"b c\" d\n";
	char w[16], v[16];

	CHECK_INT(cmdline_next_word(&p, w, sizeof(w)), 1);
	CHECK_STR(w, "a=b c");
	CHECK_INT(cmdline_next_word(&p, w, sizeof(w)), 1);
	CHECK_STR(w, "d");
	CHECK_INT(cmdline_next_word(&p, w, sizeof(w)), 0);
	p = "x=\"open";
	CHECK_INT(cmdline_next_word(&p, w, sizeof(w)), -EINVAL);
	CHECK_INT(cmdline_get("roothash=ab quiet", "roothash", v, sizeof(v)), 2);
	CHECK_STR(v, "ab");
	CHECK_INT(cmdline_get("roothash=ab roothash=cd", "roothash", v, sizeof(v)),
		  -EEXIST);
	CHECK_INT(cmdline_get("quiet", "roothash", v, sizeof(v)), 0);
}

static uint8_t *scoped_buf;

static void scoped_secret(void)
{
	_cleanup_secret_ struct secret s = {0};

	CHECK_INT(secret_new(&s, 96), 0);
	memset(s.buf, 0xa5, 96);
	scoped_buf = s.buf;
}

TEST(secret_is_wiped_by_refusals_and_freed_by_its_scope)
{
	struct secret a = {0}, more[4];
	int made = 0;

	CHECK_INT(secret_new(&a, 64), 0);
	CHECK(a.buf != NULL && ((uintptr_t)a.buf & 4095) == 0);
	memset(a.buf, 0x5a, 64);
	secret_wipe_all(); /* what fail_closed() and the crash handler call */
	for (int i = 0; i < 64; i++)
		CHECK_INT(a.buf[i], 0);
	secret_free(&a);
	CHECK(a.buf == NULL);
	secret_free(&a); /* twice: nothing */

	/* The scope's end frees it: its slot is free again (SECRETS_MAX is 4). */
	for (int round = 0; round < 3; round++)
		scoped_secret();
	CHECK(scoped_buf != NULL);
	for (int i = 0; i < 4; i++)
		made += secret_new(&more[i], 32) == 0;
	CHECK_INT(made, 4);
	struct secret fifth;
	CHECK_INT(secret_new(&fifth, 32), -ENOSPC);
	for (int i = 0; i < 4; i++)
		secret_free(&more[i]);
}

/* net_listen: the forms it takes and refuses, and a listener net_dial reaches. */
TEST(net_listen_and_dial)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	char why[128] = "", target[32];
	int l, c, s;

	CHECK_INT(net_listen("127.0.0.1:0", false, 4, why, sizeof(why)), -EINVAL);
	CHECK_CONTAINS(why, "want HOST:PORT");
	CHECK_INT(net_listen("127.0.0.1", false, 4, why, sizeof(why)), -EINVAL);
	CHECK_INT(net_listen("127.0.0.1:70000", false, 4, why, sizeof(why)), -EINVAL);
	CHECK_INT(net_listen("localhost:7000", false, 4, why, sizeof(why)), -EINVAL);
	CHECK_CONTAINS(why, "not a numeric address");
	/* A free port: bind to one the kernel picks, close it, listen there. */
	s = socket(AF_INET, SOCK_STREAM, 0);
	a = (struct sockaddr_in){.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(0x7f000001)};
	CHECK_INT(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_INT(getsockname(s, (struct sockaddr *)&a, &len), 0);
	close(s);
	snprintf(target, sizeof(target), "127.0.0.1:%u", ntohs(a.sin_port));
	l = net_listen(target, false, 4, why, sizeof(why));
	CHECK(l >= 0);
	CHECK(fcntl(l, F_GETFD) & FD_CLOEXEC);
	CHECK_INT(fcntl(l, F_GETFL) & O_NONBLOCK, 0);
	c = net_dial(target, 5, why, sizeof(why));
	CHECK(c >= 0);
	s = accept(l, NULL, NULL);
	CHECK(s >= 0);
	close(s);
	close(c);
	close(l);
	/* Every address, non-blocking (the agent's form). */
	snprintf(target, sizeof(target), ":%u", ntohs(a.sin_port));
	l = net_listen(target, true, 4, why, sizeof(why));
	CHECK(l >= 0);
	CHECK(fcntl(l, F_GETFL) & O_NONBLOCK);
	close(l);
}
