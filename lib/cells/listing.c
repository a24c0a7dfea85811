/* Sorted directory listings (see listing.h). */
#include "listing.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "slidestream/error.h"

const char *const ss_cells_image_suffixes[] = {".png", ".jpg",  ".jpeg", ".bmp",
                                               ".tif", ".tiff", NULL};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ss_cells_has_suffix(const char *name, const char *const *suffixes)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (size_t i = 0; suffixes[i]; i++)
        if (!strcasecmp(dot, suffixes[i])) return 1;
    return 0;
}

void ss_cells_names_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int ss_cells_list(const char *dir, const ss_listing_filter_t *keep, char ***names, size_t *count)
{
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return ss_error_system("cells", "cannot open folder %s", dir);
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        if (!keep->dirs && keep->suffixes && !ss_cells_has_suffix(de->d_name, keep->suffixes))
            continue;
        size_t len = strlen(dir) + strlen(de->d_name) + 2;
        char *full = malloc(len);
        if (!full) {
            rc = ss_error("cells", "out of memory listing %s", dir);
            break;
        }
        snprintf(full, len, "%s/%s", dir, de->d_name);
        struct stat st;
        int ok = !stat(full, &st) && (keep->dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
        free(full);
        if (!ok) continue;
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
        ss_cells_names_free(v, n);
        return -1;
    }
    if (n) qsort(v, n, sizeof *v, cmp_str);
    *names = v;
    *count = n;
    return 0;
}
