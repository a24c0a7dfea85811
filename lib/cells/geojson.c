/* QuPath-compatible GeoJSON of cells: a FeatureCollection in level-0 pixels, one Polygon per
 * cell (a closed 16-gon inscribed in its bounding box), properties objectType, classification
 * {name, color} and measurements. Written as a stream so a multi-image run needs no buffering. */
#include "slidestream/cells.h"

#include <math.h>

#include "slidestream/error.h"

int ss_geojson_begin(FILE *f)
{
    if (fprintf(f, "{\"type\":\"FeatureCollection\",\"features\":[\n") < 0)
        return ss_error_system("cells", "writing GeoJSON");
    return 0;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

int ss_geojson_add_cells(FILE *f, const ss_cell_t *cells, size_t n, double mpp, const char *source,
                         int *first)
{
    const double pi = 3.14159265358979323846;
    for (size_t i = 0; i < n; i++) {
        const ss_cell_t *c = &cells[i];
        int red = c->kind == SS_CELL_RED;
        fprintf(f, "%s{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[",
                *first ? "" : ",\n");
        *first = 0;
        double rx = c->bbox_w / 2.0, ry = c->bbox_h / 2.0;
        double ox = c->bbox_x + rx, oy = c->bbox_y + ry;
        for (int k = 0; k <= 16; k++) {
            double a = 2 * pi * (k % 16) / 16;
            fprintf(f, "%s[%.1f,%.1f]", k ? "," : "", ox + rx * cos(a), oy + ry * sin(a));
        }
        fprintf(f,
                "]]},\"properties\":{\"objectType\":\"detection\",\"classification\":{\"name\":"
                "\"%s\",\"color\":[%s]},",
                red ? "Red cell" : "Nucleated", red ? "220,60,60" : "70,60,200");
        if (source) {
            fprintf(f, "\"source\":");
            json_string(f, source);
            fputc(',', f);
        }
        fprintf(f, "\"measurements\":{\"centroid_x\":%.1f,\"centroid_y\":%.1f,\"area_px\":%.1f",
                c->x, c->y, c->area);
        if (mpp > 0) fprintf(f, ",\"area_um2\":%.2f", c->area * mpp * mpp);
        fprintf(f, "}}}");
    }
    if (ferror(f)) return ss_error_system("cells", "writing GeoJSON");
    return 0;
}

int ss_geojson_end(FILE *f)
{
    if (fprintf(f, "\n]}\n") < 0 || ferror(f)) return ss_error_system("cells", "writing GeoJSON");
    return 0;
}
