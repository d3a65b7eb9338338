/* ps_keygen.c - ps-keygen: writes a CURVE key pair for a server or a client,
 * and prints the allow-list line that lets a client in. */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "ps_config.h"
#include "ps_curve.h"

typedef struct {
    char role[PS_OPT_STR_MAX], name[PS_OPT_STR_MAX];
} keygen_opts_t;

static const ps_opt_t keygen_opts[] = {
    PS_OPT_STR("role", keygen_opts_t, role, "",
               "worker|admin|monitor|shard: also print the allow-list line for the key"),
    PS_OPT_STR("name", keygen_opts_t, name, "",
               "the key's name on that line (default: BASE's file "
               "name)"),
};

static const ps_optset_t keygen_optset = {
    "ps-keygen",
    "Usage: ps-keygen [--role worker|admin|monitor|shard] [--name NAME] BASE\n"
    "Writes a new CURVE key pair: BASE.secret (mode 0600, both keys; stays on its host)\n"
    "and BASE.pub (the public key, safe to share). Never overwrites a file.\n"
    "With --role, also prints the line to add to the servers' allow_file:\n"
    "  ROLE PUBLIC-KEY NAME\n"
    "Roles: worker (push/pull and the rest of training), admin (also save and\n"
    "shutdown), monitor (stats only). See docs/security.md.",
    keygen_opts,
    sizeof keygen_opts / sizeof keygen_opts[0],
};

int main(int argc, char **argv)
{
    keygen_opts_t o;
    ps_errbuf_t err;
    int first;
    int rc = ps_config_load_args(&keygen_optset, &o, argc, argv, &(ps_args_t){.positional = true},
                                 &first, &err);
    if (rc == PS_CONFIG_HELP)
        return 0;
    if (rc != PS_OK || first != argc - 1) {
        fprintf(stderr, "ps-keygen: %s\n",
                rc != PS_OK ? err.msg : "expects one BASE path after the options (see --help)");
        return EX_USAGE;
    }
    const char *base = argv[first], *role = *o.role ? o.role : NULL;
    const char *name = *o.name ? o.name : NULL;
    if (role && ps_role_parse(role) == PS_ROLE_NONE) {
        fprintf(stderr, "ps-keygen: unknown role '%s' (worker, admin, monitor or shard)\n", role);
        return EX_USAGE;
    }
    ps_curve_keys_t keys;
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
