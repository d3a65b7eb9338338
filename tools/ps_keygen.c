/* ps_keygen.c - ps-keygen: writes a CURVE key pair for a server or a client,
 * and prints the allow-list line that lets a client in. */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "ps_curve.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ps-keygen [--role worker|admin|monitor] [--name NAME] BASE\n"
            "Writes a new CURVE key pair: BASE.secret (mode 0600, both keys; stays on its host)\n"
            "and BASE.pub (the public key, safe to share). Never overwrites a file.\n\n"
            "With --role, also prints the line to add to the servers' allow_file:\n"
            "  ROLE PUBLIC-KEY NAME      (NAME defaults to the file name of BASE)\n\n"
            "Roles: worker (push/pull and the rest of training), admin (also save and\n"
            "shutdown), monitor (stats only). See docs/security.md.\n");
}

int main(int argc, char **argv)
{
    const char *role = NULL, *name = NULL, *base = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--role") == 0 && i + 1 < argc) {
            role = argv[++i];
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (argv[i][0] != '-' && !base) {
            base = argv[i];
        } else {
            fprintf(stderr, "ps-keygen: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (!base) {
        usage(stderr);
        return EX_USAGE;
    }
    if (role && ps_role_parse(role) == PS_ROLE_NONE) {
        fprintf(stderr, "ps-keygen: unknown role '%s' (worker, admin or monitor)\n", role);
        return EX_USAGE;
    }
    ps_curve_keys_t keys;
    ps_errbuf_t err;
    if (ps_curve_keygen(base, &keys, &err) != PS_OK) {
        fprintf(stderr, "ps-keygen: %s\n", err.msg);
        return EX_CANTCREAT;
    }
    memset(keys.secret_z85, 0, sizeof keys.secret_z85);
    if (role) {
        if (!name) {
            const char *slash = strrchr(base, '/');
            name = slash ? slash + 1 : base;
        }
        printf("%s %s %s\n", role, keys.public_z85, name);
    } else {
        fprintf(stderr, "ps-keygen: wrote %s.secret and %s.pub (public key %s)\n", base, base,
                keys.public_z85);
    }
    return 0;
}
