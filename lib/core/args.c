/* Declarative flag parsing (see include/slidestream/args.h). */
#include "slidestream/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"

static void help(const char *cmd, const char *usage, const ss_arg_t *args)
{
    printf("usage: slidestream %s %s\n\noptions:\n", cmd, usage);
    for (const ss_arg_t *a = args; a->name; a++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", a->name, a->meta ? " " : "", a->meta ? a->meta : "");
        printf("  %-24s %s\n", left, a->help ? a->help : "");
    }
    printf("  %-24s %s\n", "--help", "show this help");
}

static int parse_value(const char *cmd, const ss_arg_t *a, const char *v)
{
    char *end = NULL;
    errno = 0;
    switch (a->kind) {
    case SS_ARG_STRING:
        *(const char **)a->dst = v;
        return 0;
    case SS_ARG_INT:
    case SS_ARG_I64: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end)
            return ss_error(cmd, "%s: '%s' is not an integer", a->name, v);
        if ((a->min || a->max) && (x < a->min || x > a->max))
            return ss_error(cmd, "%s: %s is out of range [%.0f, %.0f]", a->name, v, a->min, a->max);
        if (a->kind == SS_ARG_INT) {
            if (x < INT32_MIN || x > INT32_MAX)
                return ss_error(cmd, "%s: %s is out of range", a->name, v);
            *(int *)a->dst = (int)x;
        } else {
            *(int64_t *)a->dst = x;
        }
        return 0;
    }
    case SS_ARG_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return ss_error(cmd, "%s: '%s' is not a number", a->name, v);
        if ((a->min || a->max) && (x < a->min || x > a->max))
            return ss_error(cmd, "%s: %s is out of range [%g, %g]", a->name, v, a->min, a->max);
        *(double *)a->dst = x;
        return 0;
    }
    default:
        return ss_error(cmd, "%s: bad flag table", a->name);
    }
}

int ss_args_parse(int argc, char **argv, const char *usage, const ss_arg_t *args, int *npos,
                  char ***pos)
{
    const char *cmd = argc > 0 ? argv[0] : "slidestream";
    if (npos) *npos = 0;
    if (pos) *pos = NULL;
    char **list = NULL;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            help(cmd, usage, args);
            free(list);
            return 1;
        }
        if (s[0] == '-' && s[1] == '-' && s[2]) {
            const char *eq = strchr(s, '=');
            size_t len = eq ? (size_t)(eq - s) : strlen(s);
            const ss_arg_t *a = args;
            for (; a->name; a++)
                if (strlen(a->name) == len && !strncmp(a->name, s, len)) break;
            if (!a->name) {
                free(list);
                return ss_error(cmd, "unknown flag '%.*s' (see slidestream %s --help)", (int)len,
                                s, cmd);
            }
            if (a->kind == SS_ARG_FLAG) {
                if (eq) {
                    free(list);
                    return ss_error(cmd, "%s takes no value", a->name);
                }
                *(int *)a->dst = 1;
                continue;
            }
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                free(list);
                return ss_error(cmd, "%s needs a value (%s)", a->name, a->meta ? a->meta : "");
            }
            if (parse_value(cmd, a, v)) {
                free(list);
                return -1;
            }
            continue;
        }
        if (!pos) {
            free(list);
            return ss_error(cmd, "unexpected argument '%s' (see slidestream %s --help)", s, cmd);
        }
        char **nl = realloc(list, (size_t)(n + 1) * sizeof *nl);
        if (!nl) {
            free(list);
            return ss_error(cmd, "out of memory");
        }
        list = nl;
        list[n++] = argv[i];
    }
    if (pos) *pos = list;
    else free(list);
    if (npos) *npos = n;
    return 0;
}

int ss_args_require(const char *cmd, const char *flag, const char *value)
{
    if (value && *value) return 0;
    return ss_error(cmd, "%s is required (see slidestream %s --help)", flag, cmd);
}
