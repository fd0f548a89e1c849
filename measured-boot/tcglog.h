/* The firmware's binary TCG event log in the crypto-agile format (TCG PC Client Platform
 * Firmware Profile: a TCG_PCClientPCREvent with the "Spec ID Event03" header, then
 * TCG_PCR_EVENT2 records), as /sys/kernel/security/tpm0/binary_bios_measurements shows
 * it, read into the records replay folds. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "eventlog.h"

#define TCGLOG_EV_NO_ACTION	  0x00000003u
#define TCGLOG_EV_IPL		  0x0000000du
#define TCGLOG_EV_EFI_HCRTM_EVENT 0x80000010u

/* "EV_IPL", "EV_EFI_VARIABLE_BOOT" …; NULL for a type we do not know. */
const char *tcglog_event_type_name(uint32_t type);

/*
 * Parses the log in buf into log (eventlog_free() it in any case). One record per event
 * that extends a PCR: EV_NO_ACTION events are not extended and are left out, except that
 * a StartupLocality one sets *locality, the value PCR 0 starts from (0 without it; 4
 * when an EV_EFI_HCRTM_EVENT shows an H-CRTM started it).
 * Each record has: pcr; the digests of the banks digest.c knows (others are skipped, as
 * the header declares their sizes); event_type the event type's name ("EV_IPL", or
 * "0x%08x"); event a printable summary of the event data (ASCII or UTF-16 text, the UEFI
 * variable name, or its size); recnum the event's index in the file, counting the
 * header as 0; offset its byte offset. Zero or 0xff bytes after the last event (unused
 * log area) end the log.
 *
 * Returns the number of records; -EBADMSG with *bad_offset and *why (a static sentence)
 * for a malformed or truncated log, or one that is not crypto-agile; -ENOMEM.
 */
int tcglog_parse(const uint8_t *buf, size_t len, struct eventlog *log, unsigned *locality,
		 size_t *bad_offset, const char **why);
