/* Pipeline file parsing and variable expansion (see include/slidestream/pipeline.h). */
#include "slidestream/pipeline.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

static int valid_name(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-') return 0;
    return 1;
}

int ss_pipeline_set(ss_pipeline_t *p, const char *k, const char *v)
{
    for (int i = 0; i < p->nvars; i++)
        if (!strcmp(p->var_key[i], k)) {
            char *nv = strdup(v);
            if (!nv) return ss_error("pipeline", "out of memory");
            free(p->var_val[i]);
            p->var_val[i] = nv;
            return 0;
        }
    if (p->nvars == SS_PIPE_MAX_VARS) return ss_error("pipeline", "%s: too many variables", p->path);
    p->var_key[p->nvars] = strdup(k);
    p->var_val[p->nvars] = strdup(v);
    if (!p->var_key[p->nvars] || !p->var_val[p->nvars]) return ss_error("pipeline", "out of memory");
    p->nvars++;
    return 0;
}

const char *ss_pipeline_var(const ss_pipeline_t *p, const char *key)
{
    for (int i = 0; i < p->nvars; i++)
        if (!strcmp(p->var_key[i], key)) return p->var_val[i];
    return NULL;
}

static int parse_line(ss_pipeline_t *p, char *line, int lineno)
{
    char *eq = strchr(line, '=');
    if (!eq) return ss_error("pipeline", "%s:%d: expected 'key = value'", p->path, lineno);
    *eq = '\0';
    char *lhs = trim(line), *rhs = trim(eq + 1);
    char w1[64] = "", w2[64] = "", w3[64] = "";
    int nw = sscanf(lhs, "%63s %63s %63s", w1, w2, w3);
    if (nw == 1 && !strcmp(w1, "name")) {
        if (!valid_name(rhs)) return ss_error("pipeline", "%s:%d: bad name '%s'", p->path, lineno, rhs);
        snprintf(p->name, sizeof p->name, "%s", rhs);
        return 0;
    }
    if (nw == 2 && !strcmp(w1, "set")) {
        if (!valid_name(w2))
            return ss_error("pipeline", "%s:%d: bad variable name '%s'", p->path, lineno, w2);
        return ss_pipeline_set(p, w2, rhs);
    }
    if (nw == 1 && (!strcmp(w1, "pre") || !strcmp(w1, "post"))) {
        int post = !strcmp(w1, "post");
        int *n = post ? &p->npost : &p->npre;
        if (*n == SS_PIPE_MAX_PRE)
            return ss_error("pipeline", "%s:%d: too many %s commands", p->path, lineno, w1);
        char *c = strdup(rhs);
        if (!c) return ss_error("pipeline", "out of memory");
        (post ? p->post : p->pre)[(*n)++] = c;
        return 0;
    }
    if ((nw == 2 || nw == 3) && (!strcmp(w1, "stage") || !strcmp(w1, "sink"))) {
        if (p->nstages == SS_PIPE_MAX_STAGES)
            return ss_error("pipeline", "%s:%d: too many stages", p->path, lineno);
        if (!valid_name(w2))
            return ss_error("pipeline", "%s:%d: bad stage name '%s'", p->path, lineno, w2);
        for (int i = 0; i < p->nstages; i++)
            if (!strcmp(p->stages[i].name, w2))
                return ss_error("pipeline", "%s:%d: stage '%s' defined twice", p->path, lineno, w2);
        int reps = 1;
        char var[64] = "";
        size_t l3 = strlen(w3);
        if (nw == 3 && !strncmp(w3, "x${", 3) && w3[l3 - 1] == '}' && l3 > 4) {
            snprintf(var, sizeof var, "%.*s", (int)(l3 - 4), w3 + 3);
            reps = 0;
        } else if (nw == 3) {
            char *end;
            long r = w3[0] == 'x' ? strtol(w3 + 1, &end, 10) : 0;
            if (w3[0] != 'x' || *end || r < 1 || r > 64)
                return ss_error("pipeline", "%s:%d: replicas '%s': want x1..x64 or x${var}",
                                p->path, lineno, w3);
            reps = (int)r;
        }
        if (!*rhs) return ss_error("pipeline", "%s:%d: stage '%s' has no command", p->path, lineno, w2);
        ss_pipe_stage_t *s = &p->stages[p->nstages++];
        snprintf(s->name, sizeof s->name, "%s", w2);
        s->replicas = reps;
        snprintf(s->replicas_var, sizeof s->replicas_var, "%s", var);
        s->sink = !strcmp(w1, "sink");
        s->line = lineno;
        if (!(s->cmd = strdup(rhs))) return ss_error("pipeline", "out of memory");
        return 0;
    }
    return ss_error("pipeline", "%s:%d: unknown entry '%s' (want name, set, pre, stage, sink, post)",
                    p->path, lineno, lhs);
}

ss_pipeline_t *ss_pipeline_load(const char *path, int noverrides, char **overrides)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        ss_error_system("pipeline", "cannot open %s", path);
        return NULL;
    }
    ss_pipeline_t *p = calloc(1, sizeof *p);
    if (!p) {
        fclose(f);
        ss_error("pipeline", "out of memory");
        return NULL;
    }
    snprintf(p->path, sizeof p->path, "%s", path);
    snprintf(p->name, sizeof p->name, "run");
    char line[8192];
    int lineno = 0, err = 0;
    while (!err && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            err = ss_error("pipeline", "%s:%d: line too long", path, lineno);
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        err = parse_line(p, s, lineno);
    }
    fclose(f);
    if (!err && p->nstages == 0) err = ss_error("pipeline", "%s: no stages", path);
    int sinks = 0;
    for (int i = 0; i < p->nstages; i++) sinks += p->stages[i].sink;
    if (!err && sinks == 0) err = ss_error("pipeline", "%s: no sink stage (declare one with 'sink NAME = ...')", path);
    for (int i = 0; !err && i < noverrides; i++) {
        char *eq = strchr(overrides[i], '=');
        if (!eq || eq == overrides[i]) {
            err = ss_error("pipeline", "override '%s': want key=value", overrides[i]);
            break;
        }
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(eq - overrides[i]), overrides[i]);
        int builtin = !strcmp(key, "rundir") || !strcmp(key, "keys") || !strcmp(key, "trust") ||
                      !strcmp(key, "insecure");
        if (!builtin && !ss_pipeline_var(p, key)) {
            char known[1024] = "";
            size_t len = 0;
            for (int k = 0; k < p->nvars && len < sizeof known - 70; k++)
                len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", k ? ", " : "", p->var_key[k]);
            err = ss_error("pipeline", "%s has no variable '%s' (it has: %s%srundir, keys, "
                                       "trust, insecure)", path, key,
                           known, p->nvars ? ", " : "");
            break;
        }
        err = ss_pipeline_set(p, key, eq + 1);
    }
    if (err) {
        ss_pipeline_destroy(&p);
        return NULL;
    }
    return p;
}

void ss_pipeline_destroy(ss_pipeline_t **pp)
{
    if (!pp || !*pp) return;
    ss_pipeline_t *p = *pp;
    for (int i = 0; i < p->nvars; i++) free(p->var_key[i]), free(p->var_val[i]);
    for (int i = 0; i < p->npre; i++) free(p->pre[i]);
    for (int i = 0; i < p->npost; i++) free(p->post[i]);
    for (int i = 0; i < p->nstages; i++) free(p->stages[i].cmd);
    free(p);
    *pp = NULL;
}

/* Expand ${var} references (recursively, bounded) into out. */
static int expand(const ss_pipeline_t *p, const char *in, char *out, size_t n, int depth)
{
    if (depth > 8) return ss_error("pipeline", "%s: variables refer to each other in a loop", p->path);
    size_t k = 0;
    for (const char *s = in; *s;) {
        if (s[0] == '$' && s[1] == '{') {
            const char *e = strchr(s + 2, '}');
            if (!e) return ss_error("pipeline", "%s: unterminated ${ in '%s'", p->path, in);
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)(e - s - 2), s + 2);
            const char *v = !strcmp(key, "name") ? p->name : ss_pipeline_var(p, key);
            if (!v) return ss_error("pipeline", "%s: undefined variable ${%s}", p->path, key);
            char sub[4096];
            if (expand(p, v, sub, sizeof sub, depth + 1)) return -1;
            size_t l = strlen(sub);
            if (k + l >= n) return ss_error("pipeline", "%s: expanded command too long", p->path);
            memcpy(out + k, sub, l);
            k += l;
            s = e + 1;
        } else {
            if (k + 1 >= n) return ss_error("pipeline", "%s: expanded command too long", p->path);
            out[k++] = *s++;
        }
    }
    out[k] = '\0';
    return 0;
}

int ss_pipeline_words(const ss_pipeline_t *p, const char *text, char **argv, int max)
{
    char buf[8192];
    if (expand(p, text, buf, sizeof buf, 0)) return -1;
    int n = 0;
    char *s = buf;
    for (;;) {
        while (isspace((unsigned char)*s)) s++;
        if (!*s) break;
        char word[4096];
        size_t k = 0;
        int quoted = 0;
        while (*s && (quoted || !isspace((unsigned char)*s))) {
            if (*s == '"') {
                quoted = !quoted;
                s++;
                continue;
            }
            if (k + 1 < sizeof word) word[k++] = *s;
            s++;
        }
        if (quoted) {
            ss_pipeline_free_words(argv, n);
            return ss_error("pipeline", "%s: unbalanced quote in '%s'", p->path, text);
        }
        word[k] = '\0';
        if (n == max) {
            ss_pipeline_free_words(argv, n);
            return ss_error("pipeline", "%s: too many words in '%s'", p->path, text);
        }
        if (!(argv[n] = strdup(word))) {
            ss_pipeline_free_words(argv, n);
            return ss_error("pipeline", "out of memory");
        }
        n++;
    }
    return n;
}

void ss_pipeline_free_words(char **argv, int n)
{
    for (int i = 0; i < n; i++) {
        free(argv[i]);
        argv[i] = NULL;
    }
}

int ss_pipeline_replicas(const ss_pipeline_t *p, const ss_pipe_stage_t *s)
{
    if (s->replicas > 0) return s->replicas;
    const char *v = ss_pipeline_var(p, s->replicas_var);
    if (!v) return ss_error("pipeline", "%s:%d: undefined variable ${%s} for the replicas of '%s'",
                            p->path, s->line, s->replicas_var, s->name);
    char *end;
    long r = strtol(v, &end, 10);
    if (*end || r < 1 || r > 64)
        return ss_error("pipeline", "%s: %s=%s: the replicas of '%s' must be 1..64", p->path,
                        s->replicas_var, v, s->name);
    return (int)r;
}
