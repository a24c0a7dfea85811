/* tally.* — counted completion: announcements and data in either order, duplicates, and a
 * description of what is missing. */
#include <stdio.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/transport.h"

#include "../check.h"

int main(void)
{
    /* Two hops: 3 tiles with 2, 0 and 1 cells; counts arrive after, before and between data. */
    ss_tally_t *t = ss_tally_new(0);
    CHECK(ss_tally_item(t, 5, 0, 100) == 0, "first item");
    CHECK(!ss_tally_complete(t, 5), "complete before any count");
    CHECK(ss_tally_part_items(t, 5, 1, 0) == 0, "empty part");
    CHECK(ss_tally_parts(t, 5, 3) == 0, "parts");
    CHECK(ss_tally_part_items(t, 5, 0, 2) == 0, "part 0 count");
    CHECK(!ss_tally_complete(t, 5), "complete with part 0 short");
    CHECK(ss_tally_item(t, 5, 0, 101) == 0, "second item");
    CHECK(ss_tally_item(t, 5, 0, 101) == 1, "duplicate not detected");
    char why[512];
    ss_tally_describe(t, 5, why, sizeof why);
    CHECK(strstr(why, "1 of 3 parts never reported") && strstr(why, "parts: 2"),
          "describe: '%s'", why);
    CHECK(ss_tally_item(t, 5, 2, 7) == 0, "part 2 item");
    CHECK(!ss_tally_complete(t, 5), "complete without part 2's count");
    CHECK(ss_tally_part_items(t, 5, 2, 1) == 0, "part 2 count");
    CHECK(ss_tally_complete(t, 5), "not complete at the end");
    CHECK(ss_tally_items(t, 5) == 3, "items %llu", (unsigned long long)ss_tally_items(t, 5));
    ss_tally_describe(t, 5, why, sizeof why);
    CHECK(why[0] == '\0', "complete slide described as '%s'", why);

    /* Contradictions are errors, not silently accepted. */
    CHECK(ss_tally_parts(t, 5, 4) == -1, "changed part count accepted");
    CHECK(ss_tally_part_items(t, 5, 0, 3) == -1, "changed item count accepted");
    CHECK(ss_tally_item(t, 5, 9, 555) == -1, "item from a part beyond the count accepted");
    CHECK(ss_tally_part_items(t, 5, 3, 1) == -1, "count for a part beyond the count accepted");
    CHECK(strstr(ss_error_buffer(), "slide 5") != NULL, "errors name the slide: %s",
          ss_error_buffer());
    ss_error_clear();

    /* Every count arrived, an item did not (a worker died holding it): the loss in items. */
    CHECK(ss_tally_parts(t, 7, 1) == 0 && ss_tally_part_items(t, 7, 0, 3) == 0, "one part");
    CHECK(ss_tally_item(t, 7, 0, 1) == 0 && ss_tally_item(t, 7, 0, 2) == 0, "two of three");
    ss_tally_describe(t, 7, why, sizeof why);
    CHECK(!strcmp(why, "slide 7: 1 of 3 items missing (2 arrived)"), "lost item: '%s'", why);

    /* A slide whose producer died: never announced. */
    CHECK(ss_tally_item(t, 9, 0, 1) == 0, "orphan item");
    ss_tally_describe(t, 9, why, sizeof why);
    CHECK(strstr(why, "never announced"), "orphan describe '%s'", why);
    uint32_t ids[4];
    CHECK(ss_tally_slides(t, ids, 4) == 3 && ids[0] == 5 && ids[1] == 7 && ids[2] == 9,
          "slide listing");
    ss_tally_destroy(&t);
    CHECK(t == NULL, "destroy must clear the pointer");

    /* One hop: tiles are their own items; many of them (set growth). */
    t = ss_tally_new(1);
    for (uint32_t p = 0; p < 5000; p++) CHECK(ss_tally_item(t, 0, p, p) == 0, "tile %u", p);
    CHECK(!ss_tally_complete(t, 0), "complete without the part count");
    CHECK(ss_tally_parts(t, 0, 5001) == 0, "parts");
    ss_tally_describe(t, 0, why, sizeof why);
    CHECK(strstr(why, "parts: 5000"), "describe '%s'", why);
    CHECK(ss_tally_item(t, 0, 5000, 5000) == 0, "last tile");
    CHECK(ss_tally_complete(t, 0), "tile stream incomplete");
    ss_tally_destroy(&t);

    /* An empty slide (no foreground) is complete once announced with 0 parts. */
    t = ss_tally_new(0);
    CHECK(ss_tally_parts(t, 3, 0) == 0 && ss_tally_complete(t, 3), "empty slide");
    ss_tally_destroy(&t);
    printf("tally: %s\n", check_failures ? "FAILED" : "ok");
    return check_failures ? 1 : 0;
}
