/* Pascal VOC annotation files (one XML per image): every <object> directly under the root gives
 * one label, its <name> the class and the centre of its <bndbox>. VOC pixel indices are 1-based
 * (BCCD's boxes run 1..640), so the centre is shifted by one to 0-based image pixels. Parsed with
 * GLib's GMarkup (libvips already brings GLib), which reports where a malformed file breaks.
 * Nested <part> objects (VOC person layout) carry their own name and box and are ignored. */
#include "slidestream/cells_labels.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "slidestream/error.h"
#include "slidestream/log.h"

enum { F_NAME, F_XMIN, F_YMIN, F_XMAX, F_YMAX, NF };
static const char *const field_names[NF] = {"name", "xmin", "ymin", "xmax", "ymax"};

typedef struct {
    const char *path;
    ss_label_list_t *out;
    size_t *n_bad;
    int depth;        /* elements open */
    int in_object;    /* an <object> is open at depth 2 */
    int field;        /* the field whose text is being read, or -1 */
    int object_line;  /* where the open object starts */
    const int *lines; /* line of each <object> start tag in document order (object_lines) */
    size_t n_lines, objects_seen;
    char text[NF][64];
    int seen[NF];
    int fatal; /* out of memory */
} voc_state_t;

static void on_start(GMarkupParseContext *ctx, const char *el, const char **an, const char **av,
                     void *user, GError **err)
{
    voc_state_t *s = user;
    s->depth++;
    if (s->depth == 1 && strcmp(el, "annotation")) {
        g_set_error(err, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                    "not a Pascal VOC annotation (root element <%s>, expected <annotation>)", el);
        return;
    }
    s->field = -1;
    int object_line = 0;
    if (!strcmp(el, "object")) {
        int col = 0;
        if (s->objects_seen < s->n_lines)
            object_line = s->lines[s->objects_seen];
        else
            g_markup_parse_context_get_position(ctx, &object_line, &col);
        s->objects_seen++;
    }
    if (s->depth == 2 && !strcmp(el, "object")) {
        s->in_object = 1;
        s->object_line = object_line;
        memset(s->text, 0, sizeof s->text);
        memset(s->seen, 0, sizeof s->seen);
        return;
    }
    if (!s->in_object) return;
    /* object/name at depth 3; object/bndbox/{x,y}{min,max} at depth 4 (the bndbox at depth 3) */
    if (s->depth == 3 && !strcmp(el, "name")) s->field = F_NAME;
    if (s->depth == 4) {
        const char *parent = g_markup_parse_context_get_element_stack(ctx)->next->data;
        if (!strcmp(parent, "bndbox"))
            for (int f = F_XMIN; f < NF; f++)
                if (!strcmp(el, field_names[f])) s->field = f;
    }
    if (s->field >= 0) s->seen[s->field] = 1;
}

static void on_text(GMarkupParseContext *ctx, const char *text, gsize len, void *user, GError **err)
{
    voc_state_t *s = user;
    if (s->field < 0) return;
    char *t = s->text[s->field];
    size_t have = strlen(t);
    size_t room = sizeof s->text[0] - 1 - have;
    memcpy(t + have, text, len < room ? len : room);
}

static char *trimmed(char *s)
{
    s += strspn(s, " \t\r\n");
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", s[n - 1]))
        s[--n] = '\0';
    return s;
}

static void bad_object(voc_state_t *s, const char *fmt, const char *a, const char *b)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, a, b);
    ss_warn("cells: %s:%d: %s; label skipped", s->path, s->object_line, msg);
    (*s->n_bad)++;
}

/* Validates the object just closed and appends it. */
static void finish_object(voc_state_t *s)
{
    char *name = trimmed(s->text[F_NAME]);
    if (!s->seen[F_NAME] || !*name) {
        bad_object(s, "object without a <name>%s%s", "", "");
        return;
    }
    double v[NF];
    for (int f = F_XMIN; f < NF; f++) {
        char *t = trimmed(s->text[f]), *end;
        if (!s->seen[f]) {
            bad_object(s, "object '%s' has no <bndbox><%s>", name, field_names[f]);
            return;
        }
        errno = 0;
        v[f] = strtod(t, &end);
        if (errno || end == t || *end || !isfinite(v[f])) {
            bad_object(s, "<%s> of object '%s' is not a number", field_names[f], name);
            return;
        }
    }
    if (v[F_XMAX] <= v[F_XMIN] || v[F_YMAX] <= v[F_YMIN]) {
        char box[128];
        snprintf(box, sizeof box, "%g,%g..%g,%g", v[F_XMIN], v[F_YMIN], v[F_XMAX], v[F_YMAX]);
        bad_object(s, "object '%s' has an empty box (xmin,ymin..xmax,ymax %s)", name, box);
        return;
    }
    if (!ss_label_class_ok(name)) {
        bad_object(s, "class '%s' is not usable as a folder name%s", name, "");
        return;
    }
    double x = (v[F_XMIN] + v[F_XMAX]) / 2 - 1, y = (v[F_YMIN] + v[F_YMAX]) / 2 - 1;
    if (ss_label_list_push(s->out, x, y, name, NULL, s->object_line)) s->fatal = 1;
}

static void on_end(GMarkupParseContext *ctx, const char *el, void *user, GError **err)
{
    voc_state_t *s = user;
    if (s->depth == 2 && s->in_object) {
        finish_object(s);
        s->in_object = 0;
        if (s->fatal)
            g_set_error(err, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT, "out of memory");
    }
    s->field = -1;
    s->depth--;
}

/* The line of every "<object" start tag, in document order, comments and CDATA skipped: GMarkup
 * tells its position only once more input follows the tag, which may be on a later line. */
static int *object_lines(const char *d, size_t len, size_t *n)
{
    size_t cap = 64;
    int *v = malloc(cap * sizeof *v), line = 1;
    *n = 0;
    for (size_t i = 0; v && i < len; i++) {
        const char *end = NULL;
        if (d[i] == '\n') line++;
        if (d[i] != '<') continue;
        if (len - i >= 4 && !memcmp(d + i, "<!--", 4)) end = "-->";
        if (len - i >= 9 && !memcmp(d + i, "<![CDATA[", 9)) end = "]]>";
        if (end) { /* skip to the end marker, counting lines */
            for (i++; i < len && !(len - i >= 3 && !memcmp(d + i, end, 3)); i++)
                line += d[i] == '\n';
            continue;
        }
        if (len - i > 7 && !memcmp(d + i, "<object", 7) && d[i + 7] &&
            strchr(" \t\r\n>/", d[i + 7])) {
            if (*n == cap) {
                int *nv = realloc(v, 2 * cap * sizeof *nv);
                if (!nv) break;
                v = nv;
                cap *= 2;
            }
            v[(*n)++] = line;
        }
    }
    return v;
}

int ss_labels_read_voc(const char *path, ss_label_list_t *out, size_t *n_bad)
{
    char *data = NULL;
    gsize len = 0;
    GError *err = NULL;
    if (!g_file_get_contents(path, &data, &len, &err)) {
        int rc = ss_error("cells", "cannot read label file %s: %s", path, err->message);
        g_error_free(err);
        return rc;
    }
    const GMarkupParser parser = {on_start, on_end, on_text, NULL, NULL};
    voc_state_t s = {.path = path, .out = out, .n_bad = n_bad, .field = -1};
    int *lines = object_lines(data, len, &s.n_lines); /* NULL: positions from GMarkup */
    s.lines = lines;
    size_t before = out->n, bad_before = *n_bad;
    GMarkupParseContext *ctx = g_markup_parse_context_new(&parser, 0, &s, NULL);
    int ok = g_markup_parse_context_parse(ctx, data, (gssize)len, &err) &&
             g_markup_parse_context_end_parse(ctx, &err);
    int rc = 0;
    if (!ok) {
        /* GMarkup's messages already say "Error on line L char C: ..." */
        rc = ss_error("cells", "label file %s is not a readable VOC annotation: %s", path,
                      err->message);
        g_error_free(err);
        /* the file is refused as a whole: drop what it gave before breaking */
        for (size_t i = before; i < out->n; i++)
            free(out->v[i].cls), free(out->v[i].image);
        out->n = before;
        *n_bad = bad_before;
    }
    g_markup_parse_context_free(ctx);
    g_free(data);
    free(lines);
    return rc;
}
