/* Pre-cropped cell images as a stream: root/<CLASS>/<file>, listed once at open (sorted byte-wise,
 * classes then files) and decoded one at a time, so memory holds one image. The stream owns the
 * listing and the current image; items borrow them until the next call. */
#include "slidestream/cells.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "slidestream/error.h"

typedef struct {
    char *klass;
    char *path;
} entry_t;

struct ss_cell_folder {
    entry_t *e;
    size_t n, cap, next;
    uint8_t *rgb;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int image_suffix(const char *name)
{
    static const char *ok[] = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"};
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcasecmp(dot, ok[i])) return 1;
    return 0;
}

/* Sorted names in dir (files or directories as asked), skipping hidden ones. */
static int list_dir(const char *dir, int want_dirs, char ***names, size_t *count)
{
    DIR *d = opendir(dir);
    if (!d) return ss_error_system("cells", "cannot open cell folder %s", dir);
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        size_t len = strlen(dir) + strlen(de->d_name) + 2;
        char *full = malloc(len);
        if (!full) {
            rc = ss_error("cells", "out of memory listing %s", dir);
            break;
        }
        snprintf(full, len, "%s/%s", dir, de->d_name);
        struct stat st;
        int keep =
            !stat(full, &st) &&
            (want_dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode) && image_suffix(de->d_name));
        free(full);
        if (!keep) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                rc = ss_error("cells", "out of memory listing %s", dir);
                break;
            }
            v = nv;
        }
        if (!(v[n] = strdup(de->d_name))) {
            rc = ss_error("cells", "out of memory listing %s", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return -1;
    }
    if (n) qsort(v, n, sizeof *v, cmp_str);
    *names = v;
    *count = n;
    return 0;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int ss_cell_folder_open(const char *root, ss_cell_folder_t **out)
{
    *out = NULL;
    ss_cell_folder_t *f = calloc(1, sizeof *f);
    if (!f) return ss_error("cells", "out of memory");
    char **classes = NULL;
    size_t nc = 0;
    if (list_dir(root, 1, &classes, &nc)) {
        free(f);
        return -1;
    }
    for (size_t c = 0; c < nc; c++) {
        size_t len = strlen(root) + strlen(classes[c]) + 2;
        char *dir = malloc(len);
        char **files = NULL;
        size_t nf = 0;
        if (!dir) goto oom;
        snprintf(dir, len, "%s/%s", root, classes[c]);
        if (list_dir(dir, 0, &files, &nf)) {
            free(dir);
            goto fail;
        }
        for (size_t i = 0; i < nf; i++) {
            if (f->n == f->cap) {
                size_t cap = f->cap ? 2 * f->cap : 256;
                entry_t *ne = realloc(f->e, cap * sizeof *ne);
                if (!ne) {
                    free(dir), free_names(files, nf);
                    goto oom;
                }
                f->e = ne;
                f->cap = cap;
            }
            size_t pl = strlen(dir) + strlen(files[i]) + 2;
            entry_t *e = &f->e[f->n];
            e->klass = strdup(classes[c]);
            e->path = malloc(pl);
            if (!e->klass || !e->path) {
                free(e->klass), free(e->path);
                free(dir), free_names(files, nf);
                goto oom;
            }
            snprintf(e->path, pl, "%s/%s", dir, files[i]);
            f->n++;
        }
        free(dir);
        free_names(files, nf);
    }
    free_names(classes, nc);
    if (f->n == 0) {
        ss_cell_folder_destroy(&f);
        return ss_error("cells", "no cell images under %s (expected %s/<CLASS>/<image>)", root,
                        root);
    }
    *out = f;
    return 0;
oom:
    ss_error("cells", "out of memory listing %s", root);
fail:
    free_names(classes, nc);
    ss_cell_folder_destroy(&f);
    return -1;
}

size_t ss_cell_folder_count(const ss_cell_folder_t *f)
{
    return f->n;
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
    free(f);
    *pf = NULL;
}
