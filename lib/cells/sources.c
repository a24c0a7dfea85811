/* Which source image each crop of a cell folder came from: ROOT/cells.csv as written by
 * `slidestream cells from-labels` (columns path and source; path relative to ROOT). Sources are
 * numbered in byte order of their names, so the numbering depends only on the file's contents.
 * The table owns its strings; lookups borrow them. */
#include "slidestream/cells.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "slidestream/error.h"
#include "slidestream/manifest.h"

typedef struct {
    char *rel;  /* "<class>/<file>" */
    int source; /* index into names */
    int line;
} row_t;

struct ss_cell_sources {
    row_t *rows; /* sorted by rel */
    size_t n;
    char **names; /* sorted, unique */
    size_t n_names;
};

static int cmp_row(const void *a, const void *b)
{
    return strcmp(((const row_t *)a)->rel, ((const row_t *)b)->rel);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void ss_cell_sources_destroy(ss_cell_sources_t **ps)
{
    ss_cell_sources_t *s = *ps;
    if (!s) return;
    for (size_t i = 0; i < s->n; i++)
        free(s->rows[i].rel);
    free(s->rows);
    for (size_t i = 0; i < s->n_names; i++)
        free(s->names[i]);
    free(s->names);
    free(s);
    *ps = NULL;
}

/* "./a/b" and "a//b" name the same crop as "a/b". */
static void normalise(char *p)
{
    while (p[0] == '.' && p[1] == '/')
        memmove(p, p + 2, strlen(p + 2) + 1);
    char *w = p;
    for (char *r = p; *r; r++)
        if (!(*r == '/' && w > p && w[-1] == '/')) *w++ = *r;
    *w = '\0';
}

/* Numbers the sources: rows' source temporarily holds the row's position in `raw`. */
static int number_sources(ss_cell_sources_t *s, char **raw)
{
    char **sorted = malloc((s->n ? s->n : 1) * sizeof *sorted);
    if (!sorted) return ss_error("cells", "out of memory");
    memcpy(sorted, raw, s->n * sizeof *sorted);
    qsort(sorted, s->n, sizeof *sorted, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < s->n; i++)
        if (!u || strcmp(sorted[u - 1], sorted[i])) sorted[u++] = sorted[i];
    s->names = calloc(u ? u : 1, sizeof *s->names);
    if (!s->names) {
        free(sorted);
        return ss_error("cells", "out of memory");
    }
    for (size_t i = 0; i < u; i++)
        if (!(s->names[i] = strdup(sorted[i]))) {
            free(sorted);
            return ss_error("cells", "out of memory");
        }
    s->n_names = u;
    for (size_t i = 0; i < s->n; i++) {
        char **hit = bsearch(&raw[s->rows[i].source], sorted, u, sizeof *sorted, cmp_str);
        s->rows[i].source = (int)(hit - sorted);
    }
    free(sorted);
    return 0;
}

int ss_cell_sources_load(const char *root, ss_cell_sources_t **out)
{
    *out = NULL;
    size_t len = strlen(root) + sizeof "/cells.csv";
    char *path = malloc(len);
    if (!path) return ss_error("cells", "out of memory");
    snprintf(path, len, "%s/cells.csv", root);
    FILE *f = fopen(path, "r");
    if (!f) {
        int absent = errno == ENOENT;
        int rc = absent ? 0 : ss_error_system("cells", "cannot read %s", path);
        free(path);
        return rc;
    }
    ss_cell_sources_t *s = calloc(1, sizeof *s);
    if (!s) {
        fclose(f);
        free(path);
        return ss_error("cells", "out of memory");
    }
    char **raw = NULL, *buf = NULL, *fields[64];
    size_t cap = 0, rows_cap = 0;
    int line = 0, rc = 0, c_path = -1, c_source = -1, header = 0;
    while (!rc && getline(&buf, &cap, f) != -1) {
        line++;
        if (buf[strspn(buf, " \t\r\n")] == '\0') continue;
        int n = ss_csv_split(buf, fields, 64);
        if (!header) {
            header = 1;
            for (int i = 0; i < n; i++) {
                if (!strcasecmp(fields[i], "path")) c_path = i;
                if (!strcasecmp(fields[i], "source")) c_source = i;
            }
            if (c_path < 0 || c_source < 0) break; /* not an index of sources: none */
            continue;
        }
        int need = c_path > c_source ? c_path : c_source;
        if (n <= need || !*fields[c_path] || !*fields[c_source]) {
            rc = ss_error("cells", "%s:%d: a row needs a path and a source", path, line);
            break;
        }
        if (s->n == rows_cap) {
            rows_cap = rows_cap ? 2 * rows_cap : 1024;
            row_t *nr = realloc(s->rows, rows_cap * sizeof *nr);
            char **nraw = realloc(raw, rows_cap * sizeof *nraw);
            if (nr) s->rows = nr;
            if (nraw) raw = nraw;
            if (!nr || !nraw) {
                rc = ss_error("cells", "out of memory reading %s", path);
                break;
            }
        }
        row_t *r = &s->rows[s->n];
        r->rel = strdup(fields[c_path]);
        raw[s->n] = strdup(fields[c_source]);
        r->source = (int)s->n;
        r->line = line;
        if (!r->rel || !raw[s->n]) {
            free(r->rel), free(raw[s->n]);
            rc = ss_error("cells", "out of memory reading %s", path);
            break;
        }
        normalise(r->rel);
        s->n++;
    }
    if (!rc && ferror(f)) rc = ss_error_system("cells", "error reading %s", path);
    fclose(f);
    free(buf);
    int indexed = !rc && c_path >= 0 && c_source >= 0;
    if (indexed) rc = number_sources(s, raw);
    if (indexed && !rc) {
        qsort(s->rows, s->n, sizeof *s->rows, cmp_row);
        for (size_t i = 1; i < s->n && !rc; i++)
            if (!strcmp(s->rows[i].rel, s->rows[i - 1].rel))
                rc = ss_error("cells", "%s:%d: %s is listed twice (also on line %d)", path,
                              s->rows[i].line, s->rows[i].rel, s->rows[i - 1].line);
    }
    for (size_t i = 0; raw && i < s->n; i++)
        free(raw[i]);
    free(raw);
    free(path);
    if (rc || !indexed) {
        ss_cell_sources_destroy(&s);
        return rc;
    }
    *out = s;
    return 0;
}

int ss_cell_sources_find(const ss_cell_sources_t *s, const char *rel)
{
    if (!s || !rel) return -1;
    row_t key = {.rel = (char *)rel};
    const row_t *hit = bsearch(&key, s->rows, s->n, sizeof *s->rows, cmp_row);
    return hit ? hit->source : -1;
}

size_t ss_cell_sources_count(const ss_cell_sources_t *s)
{
    return s ? s->n_names : 0;
}

const char *ss_cell_sources_name(const ss_cell_sources_t *s, int i)
{
    return s && i >= 0 && (size_t)i < s->n_names ? s->names[i] : NULL;
}
