/* Pre-cropped cell images as a stream: root/<CLASS>/<file>, listed once at open (sorted byte-wise,
 * classes then files) and decoded one at a time, so memory holds one image. When root/cells.csv
 * says which image each crop came from, items carry it. The stream owns the listing, the sources
 * and the current image; items borrow them until the next call. */
#include "slidestream/cells.h"

#include <stdlib.h>
#include <string.h>

#include "listing.h"
#include "slidestream/error.h"

typedef struct {
    char *klass;
    char *path;
    int source;
} entry_t;

struct ss_cell_folder {
    entry_t *e;
    size_t n, cap, next;
    uint8_t *rgb;
    ss_cell_sources_t *sources;
};

/* Appends root/klass/file with its source. */
static int add_entry(ss_cell_folder_t *f, const char *root, const char *klass, const char *file)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 256;
        entry_t *ne = realloc(f->e, cap * sizeof *ne);
        if (!ne) return ss_error("cells", "out of memory listing %s", root);
        f->e = ne;
        f->cap = cap;
    }
    size_t pl = strlen(root) + strlen(klass) + strlen(file) + 3;
    entry_t *e = &f->e[f->n];
    e->klass = strdup(klass);
    e->path = malloc(pl);
    if (!e->klass || !e->path) {
        free(e->klass), free(e->path);
        return ss_error("cells", "out of memory listing %s", root);
    }
    snprintf(e->path, pl, "%s/%s/%s", root, klass, file);
    /* the relative name "<klass>/<file>" is the tail of the path */
    e->source = ss_cell_sources_find(f->sources, e->path + strlen(root) + 1);
    f->n++;
    return 0;
}

int ss_cell_folder_open(const char *root, ss_cell_folder_t **out)
{
    *out = NULL;
    ss_cell_folder_t *f = calloc(1, sizeof *f);
    if (!f) return ss_error("cells", "out of memory");
    const ss_listing_filter_t dirs = {1, NULL}, images = {0, ss_cells_image_suffixes};
    char **classes = NULL;
    size_t nc = 0;
    if (ss_cells_list(root, &dirs, &classes, &nc) || ss_cell_sources_load(root, &f->sources)) {
        ss_cells_names_free(classes, nc);
        ss_cell_folder_destroy(&f);
        return -1;
    }
    int rc = 0;
    for (size_t c = 0; !rc && c < nc; c++) {
        size_t len = strlen(root) + strlen(classes[c]) + 2;
        char *dir = malloc(len);
        char **files = NULL;
        size_t nf = 0;
        if (!dir) {
            rc = ss_error("cells", "out of memory listing %s", root);
            break;
        }
        snprintf(dir, len, "%s/%s", root, classes[c]);
        rc = ss_cells_list(dir, &images, &files, &nf);
        for (size_t i = 0; !rc && i < nf; i++)
            rc = add_entry(f, root, classes[c], files[i]);
        free(dir);
        ss_cells_names_free(files, nf);
    }
    ss_cells_names_free(classes, nc);
    if (!rc && f->n == 0)
        rc = ss_error("cells", "no cell images under %s (expected %s/<CLASS>/<image>)", root, root);
    if (rc) {
        ss_cell_folder_destroy(&f);
        return -1;
    }
    *out = f;
    return 0;
}

size_t ss_cell_folder_count(const ss_cell_folder_t *f)
{
    return f->n;
}

const ss_cell_sources_t *ss_cell_folder_sources(const ss_cell_folder_t *f)
{
    return f->sources;
}

int ss_cell_folder_next(ss_cell_folder_t *f, ss_cell_item_t *item)
{
    free(f->rgb);
    f->rgb = NULL;
    if (f->next >= f->n) return 0;
    size_t i = f->next++;
    int w, h;
    if (ss_image_load_rgb(f->e[i].path, &f->rgb, &w, &h)) return -1;
    item->class_code = f->e[i].klass;
    item->path = f->e[i].path;
    item->rgb = f->rgb;
    item->w = w;
    item->h = h;
    item->index = i;
    item->source_index = f->e[i].source;
    item->source = ss_cell_sources_name(f->sources, f->e[i].source);
    return 1;
}

void ss_cell_folder_destroy(ss_cell_folder_t **pf)
{
    ss_cell_folder_t *f = *pf;
    if (!f) return;
    for (size_t i = 0; i < f->n; i++)
        free(f->e[i].klass), free(f->e[i].path);
    free(f->e);
    free(f->rgb);
    ss_cell_sources_destroy(&f->sources);
    free(f);
    *pf = NULL;
}
