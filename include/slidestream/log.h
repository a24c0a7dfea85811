/* slidestream — diagnostics and progress lines on stderr.
 *
 * A progress meter redraws one line in place when stderr is a terminal and prints a plain
 * line at most every few seconds otherwise, so logs from CI and pipes stay readable.
 */
#ifndef SLIDESTREAM_LOG_H
#define SLIDESTREAM_LOG_H

#include <stdint.h>
#include "slidestream/error.h"

void ss_info(const char *fmt, ...) SS_PRINTF(1, 2);
void ss_warn(const char *fmt, ...) SS_PRINTF(1, 2);

/* Set by `--quiet`: ss_info becomes silent (warnings still print). */
void ss_log_set_quiet(int quiet);

/* Monotonic clock in seconds. */
double ss_now(void);

typedef struct ss_progress ss_progress_t;

/* `label` names the work ("tiles"); `total` may be 0 when unknown. */
ss_progress_t *ss_progress_new(const char *label, uint64_t total);
void ss_progress_set_total(ss_progress_t *p, uint64_t total);
/* Advance by n items; redraws at most ~10 times a second. */
void ss_progress_add(ss_progress_t *p, uint64_t n);
/* Print the final line (count, rate, elapsed) and free; sets *pp to NULL. */
void ss_progress_destroy(ss_progress_t **pp);

#endif
