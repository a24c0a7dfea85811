/* slidestream — error buffer shared by every module.
 *
 * Library functions return 0 on success and -1 on failure, after appending one line
 * "domain: message" to a per-thread error buffer (libvips style). Callers chain calls as
 * `if (a() || b()) return -1;` and only `main` reports the buffer and exits.
 */
#ifndef SLIDESTREAM_ERROR_H
#define SLIDESTREAM_ERROR_H

#include <stddef.h>

#if defined(__GNUC__)
#define SS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SS_PRINTF(a, b)
#endif

/* Append "domain: message\n" to this thread's error buffer. Always returns -1 so that a
 * failing function can `return ss_error(...)`. */
int ss_error(const char *domain, const char *fmt, ...) SS_PRINTF(2, 3);

/* As ss_error, with ": strerror(errno)" appended (errno sampled on entry). */
int ss_error_system(const char *domain, const char *fmt, ...) SS_PRINTF(2, 3);

/* Everything appended since the last clear; "" when empty. Valid until the next call. */
const char *ss_error_buffer(void);

/* The most recent line only, without its newline ("" when empty). */
const char *ss_error_last(void);

void ss_error_clear(void);

/* Print the buffer (or `fallback` when empty) to stderr as "slidestream: ..." lines and clear. */
void ss_error_report(const char *fallback);

#endif
