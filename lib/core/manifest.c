/* Slide manifest loading (see include/slidestream/manifest.h). */
#include "slidestream/manifest.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"

int ss_csv_split(char *line, char **fields, int max)
{
    int n = 0;
    char *s = line;
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r')) s[--len] = '\0';
    for (;;) {
        if (n == max) return n;
        char *w = s, *start = s;
        if (*s == '"') {
            s++;
            for (;;) {
                if (!*s) return -1;
                if (*s == '"' && s[1] == '"') {
                    *w++ = '"';
                    s += 2;
                } else if (*s == '"') {
                    s++;
                    break;
                } else {
                    *w++ = *s++;
                }
            }
            while (*s && *s != ',') s++; /* junk after a closing quote is ignored */
        } else {
            while (*s && *s != ',') *w++ = *s++;
        }
        int last = *s != ',';
        if (!last) s++;
        *w = '\0';
        fields[n++] = start;
        if (last) return n;
    }
}

static char *dup_or_null(const char *s)
{
    char *d = strdup(s);
    if (!d) ss_error("manifest", "out of memory");
    return d;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
    size_t k = strspn(s, " \t");
    if (k) memmove(s, s + k, n - k + 1);
}

ss_manifest_t *ss_manifest_load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        ss_error_system("manifest", "cannot open %s", path);
        return NULL;
    }
    ss_manifest_t *m = calloc(1, sizeof *m);
    char dir[4096] = "";
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(dir, sizeof dir, "%.*s/", (int)(slash - path), path);
    char line[16384];
    char *fields[32];
    int col_id = -1, col_path = -1, col_label = -1, col_split = -1, col_mpp = -1, ncols = 0;
    int lineno = 0, err = !m;
    size_t cap = 0;
    while (!err && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            err = ss_error("manifest", "%s:%d: line too long", path, lineno);
            break;
        }
        if (line[0] == '\n' || line[0] == '\r' || line[0] == '#' || line[0] == '\0') continue;
        int n = ss_csv_split(line, fields, 32);
        if (n < 0) {
            err = ss_error("manifest", "%s:%d: unterminated quote", path, lineno);
            break;
        }
        for (int i = 0; i < n; i++) trim(fields[i]);
        if (ncols == 0) {
            ncols = n;
            for (int i = 0; i < n; i++) {
                const char *h = fields[i];
                if (i == 0 && !strncmp(h, "\xef\xbb\xbf", 3)) h += 3; /* UTF-8 BOM */
                if (!strcmp(h, "slide_id")) col_id = i;
                else if (!strcmp(h, "path")) col_path = i;
                else if (!strcmp(h, "label")) col_label = i;
                else if (!strcmp(h, "split")) col_split = i;
                else if (!strcmp(h, "mpp")) col_mpp = i;
            }
            if (col_id < 0 || col_path < 0 || col_label < 0)
                err = ss_error("manifest", "%s: header must name slide_id, path and label "
                                           "(optional: split, mpp); got '%s...'", path, fields[0]);
            continue;
        }
        if (n != ncols) {
            err = ss_error("manifest", "%s:%d: %d fields, the header has %d", path, lineno, n, ncols);
            break;
        }
        if (!*fields[col_id] || !*fields[col_path]) {
            err = ss_error("manifest", "%s:%d: empty slide_id or path", path, lineno);
            break;
        }
        for (size_t i = 0; i < m->n; i++)
            if (!strcmp(m->rows[i].slide_id, fields[col_id])) {
                err = ss_error("manifest", "%s:%d: slide_id '%s' appears twice", path, lineno,
                               fields[col_id]);
                break;
            }
        if (err) break;
        if (strchr(fields[col_id], '/')) {
            err = ss_error("manifest", "%s:%d: slide_id '%s' must not contain '/' (it names files)",
                           path, lineno, fields[col_id]);
            break;
        }
        ss_manifest_row_t r = {0};
        r.label = -1;
        const char *lab = fields[col_label];
        if (*lab) {
            char *end;
            errno = 0;
            long v = strtol(lab, &end, 10);
            if (errno || *end || v < 0 || v > 1000000) {
                err = ss_error("manifest", "%s:%d: label '%s' is not a class number >= 0", path,
                               lineno, lab);
                break;
            }
            r.label = (int)v;
        }
        if (col_mpp >= 0 && *fields[col_mpp]) {
            char *end;
            r.mpp = strtod(fields[col_mpp], &end);
            if (*end || !isfinite(r.mpp) || r.mpp <= 0 || r.mpp > 1000) {
                err = ss_error("manifest", "%s:%d: mpp '%s' is not a positive number of microns "
                                           "per pixel", path, lineno, fields[col_mpp]);
                break;
            }
        }
        char full[8192];
        const char *p = fields[col_path];
        snprintf(full, sizeof full, "%s%s", p[0] == '/' ? "" : dir, p);
        if (m->n == cap) {
            cap = cap ? 2 * cap : 64;
            ss_manifest_row_t *nr = realloc(m->rows, cap * sizeof *nr);
            if (!nr) {
                err = ss_error("manifest", "out of memory");
                break;
            }
            m->rows = nr;
        }
        r.slide_id = dup_or_null(fields[col_id]);
        r.path = dup_or_null(full);
        r.split = dup_or_null(col_split >= 0 ? fields[col_split] : "");
        m->rows[m->n++] = r;
        if (!r.slide_id || !r.path || !r.split) err = -1;
    }
    fclose(f);
    if (!err && ncols == 0) err = ss_error("manifest", "%s is empty", path);
    if (err) ss_manifest_destroy(&m);
    return m;
}

ss_manifest_t *ss_manifest_from_paths(int n, char **paths)
{
    ss_manifest_t *m = calloc(1, sizeof *m);
    if (!m || !(m->rows = calloc((size_t)(n ? n : 1), sizeof *m->rows))) {
        free(m);
        ss_error("manifest", "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const char *base = strrchr(paths[i], '/');
        base = base ? base + 1 : paths[i];
        char id[1024];
        snprintf(id, sizeof id, "%s", base);
        char *dot = strrchr(id, '.');
        if (dot && dot != id) *dot = '\0';
        for (size_t k = 0; k < m->n; k++)
            if (!strcmp(m->rows[k].slide_id, id)) {
                ss_error("manifest", "slides '%s' and '%s' would both be called '%s'; give a "
                         "manifest with distinct slide_id values", m->rows[k].path, paths[i], id);
                ss_manifest_destroy(&m);
                return NULL;
            }
        ss_manifest_row_t *r = &m->rows[m->n++];
        r->label = -1;
        r->slide_id = dup_or_null(id);
        r->path = dup_or_null(paths[i]);
        r->split = dup_or_null("");
        if (!r->slide_id || !r->path || !r->split) {
            ss_manifest_destroy(&m);
            return NULL;
        }
    }
    return m;
}

void ss_manifest_destroy(ss_manifest_t **mp)
{
    if (!mp || !*mp) return;
    for (size_t i = 0; i < (*mp)->n; i++) {
        free((*mp)->rows[i].slide_id);
        free((*mp)->rows[i].path);
        free((*mp)->rows[i].split);
    }
    free((*mp)->rows);
    free(*mp);
    *mp = NULL;
}
