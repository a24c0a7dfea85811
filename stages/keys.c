/* keys — CURVE key pairs for stages that talk over tcp (docs/transport-security.md).
 *   slidestream keys new DIR [--force]   DIR/key.secret (0600) and DIR/key.pub
 * A stage uses its pair with --keys DIR and trusts its peers' key.pub files with --trust. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/error.h"
#include "slidestream/transport.h"

static int cmd_new(int argc, char **argv)
{
    int force = 0, npos = 0;
    char **pos = NULL;
    ss_arg_t args[] = {
        {"--force", SS_ARG_FLAG, &force, NULL, "replace an existing pair", 0, 0},
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "DIR [--force]\n\n"
                           "Writes a new CURVE key pair: DIR/key.secret (mode 0600, stays on this\n"
                           "machine) and DIR/key.pub (goes to the peers' --trust directories).",
                           args, &npos, &pos);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (npos != 1) {
        free(pos);
        ss_error_report("keys new: which directory? (slidestream keys new DIR)");
        return 2;
    }
    const char *dir = pos[0];
    free(pos);
    char pub[41];
    if (ss_keys_new(dir, force, pub)) {
        ss_error_report(NULL);
        return 1;
    }
    printf("%s/key.secret: secret key (mode 0600; keep it on this machine)\n"
           "%s/key.pub: public key %s\n"
           "Use it with --keys %s; peers trust it by a copy of key.pub in their --trust "
           "directory, named HOST.pub after this machine.\n",
           dir, dir, pub, dir);
    return 0;
}

int ss_main_keys(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "new"))
        return argv[1] = "keys new", cmd_new(argc - 1, argv + 1);
    int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    fprintf(help ? stdout : stderr, "usage: slidestream keys new DIR [--force]\n");
    return help ? 0 : 2;
}
