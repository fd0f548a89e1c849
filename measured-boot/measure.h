/* measure(): extend every active bank of the boot's measurement register and append the
 * record to the event log, both in one critical section. Backends: TPM 2.0 and Intel TDX.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct measurer;
struct platform_decision;
struct tpm_bank;

enum measurer_backend {
	MEASURER_NONE = 0,
	MEASURER_TPM = 1,
	MEASURER_TDX,
};

/* The event log cvminit writes (DESIGN: "What cvminit measures"). */
#define MEASURE_LOG_PATH "/run/log/cvminit/measure.log"

/* Picks the backend the platform rule trusts (platform.h) under root ("/" on a node; a
 * fake tree in tests): reads what the platform offers, reads the TPM's EK when an SVSM
 * vTPM manifest is to be compared, decides with platform_decide() and opens that backend:
 * the TPM at <root>/dev/tpmrmN or the TDX RTMRs at <root>/sys/class/misc/tdx_guest/
 * measurements. tpm_platform: the config's `set tpm=platform`. d gets the decision; when
 * the chosen backend fails to open, d->reason says why. Returns 0; -EPERM when the
 * decision is a refusal; -ENODEV when nothing trusted is there to measure into (failing
 * closed is the caller's decision: measure=); another -errno when the backend fails.
 * log_path: MEASURE_LOG_PATH. */
int measurer_open_platform(const char *root, const char *log_path, bool tpm_platform,
			   struct platform_decision *d, struct measurer **ret);
/* The same without a config's declaration (tpm=verify). */
int measurer_open(const char *root, const char *log_path, struct measurer **ret);
/* One backend explicitly: tcti/conf as for tpm_open(); root as above. */
int measurer_open_tpm(const char *tcti, const char *conf, const char *log_path,
		      struct measurer **ret);
int measurer_open_tdx(const char *root, const char *log_path, struct measurer **ret);
void measurer_close(struct measurer *m);
enum measurer_backend measurer_backend(const struct measurer *m);
/* The TPM under a TPM backend the platform rule lets seal (for sealing), NULL under TDX.
 * Owned by the measurer. */
struct tpm *measurer_tpm(struct measurer *m);

/* Whether measure() can extend every active bank: each must be an algorithm cvminit hashes
 * with the TPM's digest size, and there must be one. A bank left out would keep its reset
 * value and a policy over it would unseal whatever ran. Returns 0, or -EOPNOTSUPP (-ENODEV
 * for no bank) with err naming the algorithm id. Pure. */
int measure_banks_check(const struct tpm_bank *banks, size_t n, char *err, size_t errlen);

/* Extends pcr with the digest of data in every active bank (TPM), or the RTMR that pcr
 * maps to with its sha384 (TDX), and appends the record for event, which says whether the
 * extend succeeded. PCR 11 records get eventType "phase", as systemd-pcrphase's do.
 * Returns 0, or the extend's error (the record then says "extended":false), or the log's
 * error. */
int measure(struct measurer *m, unsigned pcr, const char *event, const void *data,
	    size_t len);
/* The same; the record also names where data came from (content.name, e.g. a path). The
 * record carries data in both, so a verifier recomputes the digests from the log. */
int measure_named(struct measurer *m, unsigned pcr, const char *event, const char *name,
		  const void *data, size_t len);

/* The RTMR a PCR maps to by the UEFI spec's CC measurement table: PCR 1, 7 → 0; 2–6 → 1;
 * 8–15 → 2. -EOPNOTSUPP for PCR 0 (MRTD, not extendable at run time) and 16–23; -EINVAL
 * above. */
int tdx_pcr_to_rtmr(unsigned pcr);

/* The event type of a record whose digests are HMACs keyed with a volume key, as systemd
 * logs its cryptsetup: measurements ("volume-key", Tpm2UserspaceEventType). */
#define MEASURE_EVENT_VOLUME_KEY "volume-key"

/* Extends pcr (or its RTMR) with HMAC(bank's hash, key, label) in every bank measure()
 * uses, and logs the record with label as its string and event_type: the secret reaches
 * neither the TPM nor the log, yet another key gives another PCR value. A verifier cannot
 * recompute the digest; it replays the logged one and pins it. Returns as measure(). */
int measure_hmac(struct measurer *m, unsigned pcr, const char *label,
		 const char *event_type, const void *key, size_t key_len);
