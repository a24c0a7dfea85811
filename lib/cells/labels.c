/* Label files of the text formats: points (`x y class` per line, one file per image) and CSV
 * (`image,x,y,class` for many images). Each label is validated as it is read; a bad line is a
 * warning naming file:line and is skipped, so one typo never loses a whole image. Lists own their
 * strings. The VOC reader is in labels_voc.c. */
#include "slidestream/cells_labels.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/manifest.h"

int ss_labels_format_parse(const char *name, ss_labels_format_t *out)
{
    static const char *names[] = {"points", "voc", "csv"};
    for (int i = 0; i < 3; i++)
        if (name && !strcmp(name, names[i])) {
            *out = (ss_labels_format_t)i;
            return 0;
        }
    return ss_error("cells", "unknown label format '%s' (expected points, voc or csv)",
                    name ? name : "");
}

const char *ss_labels_format_name(ss_labels_format_t f)
{
    return f == SS_LABELS_VOC ? "voc" : f == SS_LABELS_CSV ? "csv" : "points";
}

void ss_label_list_free(ss_label_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].cls), free(l->v[i].image);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int ss_label_class_ok(const char *cls)
{
    size_t n = strlen(cls);
    if (n == 0 || n > 64 || cls[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = cls[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '+' || c == '-'))
            return 0;
    }
    return 1;
}

int ss_label_list_push(ss_label_list_t *l, double x, double y, const char *cls, const char *image,
                       int line)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        ss_label_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return ss_error("cells", "out of memory reading labels");
        l->v = v;
        l->cap = cap;
    }
    ss_label_t *e = &l->v[l->n];
    e->x = x;
    e->y = y;
    e->line = line;
    e->cls = strdup(cls);
    e->image = image ? strdup(image) : NULL;
    if (!e->cls || (image && !e->image)) {
        free(e->cls), free(e->image);
        return ss_error("cells", "out of memory reading labels");
    }
    l->n++;
    return 0;
}

/* A coordinate: a finite number, nothing after it. */
static int parse_coord(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return !errno && end != s && !*end && isfinite(*v);
}

static void bad_line(const char *path, int line, size_t *n_bad, const char *fmt, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, what);
    ss_warn("cells: %s:%d: %s; label skipped", path, line, msg);
    (*n_bad)++;
}

/* The line as shown in a message: at most 60 characters. */
static const char *shown(const char *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.60s%s", s, strlen(s) > 60 ? "..." : "");
    return buf;
}

int ss_labels_read_points(const char *path, ss_label_list_t *out, size_t *n_bad)
{
    FILE *f = fopen(path, "r");
    if (!f) return ss_error_system("cells", "cannot read label file %s", path);
    char *buf = NULL, show[80];
    size_t cap = 0;
    int line = 0, rc = 0;
    while (!rc && getline(&buf, &cap, f) != -1) {
        line++;
        buf[strcspn(buf, "\r\n")] = '\0';
        char copy[128];
        snprintf(copy, sizeof copy, "%s", buf);
        char *tok[4], *save = NULL;
        int n = 0;
        for (char *t = strtok_r(buf, " \t", &save); t && n < 4; t = strtok_r(NULL, " \t", &save))
            tok[n++] = t;
        if (n == 0) continue; /* blank line */
        double x, y;
        if (n != 3) {
            bad_line(path, line, n_bad, "expected 'x y class', got '%s'",
                     shown(copy, show, sizeof show));
        } else if (!parse_coord(tok[0], &x) || !parse_coord(tok[1], &y)) {
            bad_line(path, line, n_bad, "x and y must be numbers, got '%s'",
                     shown(copy, show, sizeof show));
        } else if (!ss_label_class_ok(tok[2])) {
            bad_line(path, line, n_bad, "class '%s' is not usable as a folder name",
                     shown(tok[2], show, sizeof show));
        } else {
            rc = ss_label_list_push(out, x, y, tok[2], NULL, line);
        }
    }
    if (!rc && ferror(f)) rc = ss_error_system("cells", "error reading label file %s", path);
    free(buf);
    fclose(f);
    return rc;
}

static char *trim(char *s)
{
    s += strspn(s, " \t");
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Column of `name` in the header fields, or -1. */
static int column(char **fields, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcasecmp(fields[i], name)) return i;
    return -1;
}

int ss_labels_read_csv(const char *path, ss_label_list_t *out, size_t *n_bad)
{
    FILE *f = fopen(path, "r");
    if (!f) return ss_error_system("cells", "cannot read label file %s", path);
    enum { MAXF = 64 };
    char *buf = NULL, *fields[MAXF], show[80];
    size_t cap = 0;
    int line = 0, rc = 0, col[4] = {-1, -1, -1, -1}, header = 0;
    static const char *names[4] = {"image", "x", "y", "class"};
    while (!rc && getline(&buf, &cap, f) != -1) {
        line++;
        if (buf[strspn(buf, " \t\r\n")] == '\0') continue;
        char copy[128];
        snprintf(copy, sizeof copy, "%s", buf);
        copy[strcspn(copy, "\r\n")] = '\0';
        int n = ss_csv_split(buf, fields, MAXF);
        for (int k = 0; k < n; k++)
            fields[k] = trim(fields[k]);
        if (!header) {
            for (int k = 0; k < 4 && n > 0; k++)
                col[k] = column(fields, n, names[k]);
            for (int k = 0; k < 4; k++)
                if (col[k] < 0)
                    rc = ss_error("cells",
                                  "%s:%d: the header must name the columns image,x,y,class "
                                  "(no '%s' in '%s')",
                                  path, line, names[k], shown(copy, show, sizeof show));
            header = 1;
            continue;
        }
        int need = col[0];
        for (int k = 1; k < 4; k++)
            if (col[k] > need) need = col[k];
        double x, y;
        if (n < 0) {
            bad_line(path, line, n_bad, "unterminated quote in '%s'",
                     shown(copy, show, sizeof show));
        } else if (n <= need) {
            bad_line(path, line, n_bad, "too few fields in '%s'", shown(copy, show, sizeof show));
        } else if (!*fields[col[0]]) {
            bad_line(path, line, n_bad, "empty image in '%s'", shown(copy, show, sizeof show));
        } else if (!parse_coord(fields[col[1]], &x) || !parse_coord(fields[col[2]], &y)) {
            bad_line(path, line, n_bad, "x and y must be numbers, got '%s'",
                     shown(copy, show, sizeof show));
        } else if (!ss_label_class_ok(fields[col[3]])) {
            bad_line(path, line, n_bad, "class '%s' is not usable as a folder name",
                     shown(fields[col[3]], show, sizeof show));
        } else {
            rc = ss_label_list_push(out, x, y, fields[col[3]], fields[col[0]], line);
        }
    }
    if (!rc && ferror(f)) rc = ss_error_system("cells", "error reading label file %s", path);
    if (!rc && !header)
        rc = ss_error("cells", "%s is empty (expected a header image,x,y,class)", path);
    free(buf);
    fclose(f);
    return rc;
}
