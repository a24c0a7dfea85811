/* Per-thread error buffer (see include/slidestream/error.h). The buffer is bounded: when it
 * is full, the oldest text is kept and later lines are dropped with a marker, because the
 * first error is usually the cause. */
#include "slidestream/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SS_ERROR_MAX 8192

static _Thread_local char err_buf[SS_ERROR_MAX];
static _Thread_local size_t err_len;
static _Thread_local char err_last[1024];

static void append(const char *domain, const char *msg)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "%s: %s", domain ? domain : "slidestream", msg);
    if (n < 0) return;
    snprintf(err_last, sizeof err_last, "%s", line);
    size_t len = strlen(line);
    if (err_len + len + 2 >= SS_ERROR_MAX) {
        static const char full[] = "(further errors dropped)\n";
        if (err_len + sizeof full < SS_ERROR_MAX && !strstr(err_buf, full)) {
            memcpy(err_buf + err_len, full, sizeof full);
            err_len += sizeof full - 1;
        }
        return;
    }
    memcpy(err_buf + err_len, line, len);
    err_len += len;
    err_buf[err_len++] = '\n';
    err_buf[err_len] = '\0';
}

int ss_error(const char *domain, const char *fmt, ...)
{
    char msg[1000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    append(domain, msg);
    return -1;
}

int ss_error_system(const char *domain, const char *fmt, ...)
{
    int saved = errno;
    char msg[1000];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof msg)
        snprintf(msg + n, sizeof msg - (size_t)n, ": %s", strerror(saved));
    append(domain, msg);
    errno = saved;
    return -1;
}

const char *ss_error_buffer(void)
{
    return err_buf;
}

const char *ss_error_last(void)
{
    return err_last;
}

void ss_error_clear(void)
{
    err_len = 0;
    err_buf[0] = '\0';
    err_last[0] = '\0';
}

void ss_error_report(const char *fallback)
{
    if (err_len == 0) {
        if (fallback) fprintf(stderr, "slidestream: %s\n", fallback);
        return;
    }
    const char *p = err_buf;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(stderr, "slidestream: %.*s\n", (int)n, p);
        p += n + (nl ? 1 : 0);
    }
    ss_error_clear();
}
