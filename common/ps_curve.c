/* ps_curve.c - key files, the allow-list and the ZAP handler thread. */
#include "ps_curve.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "ps_log.h"

static const char *const role_names[] = {"none", "worker", "admin", "monitor", "shard"};

const char *ps_role_name(ps_role_t role)
{
    return (unsigned)role <= PS_ROLE_SHARD ? role_names[role] : "none";
}

bool ps_is_loopback(const char *a)
{
    return strncmp(a, "127.", 4) == 0 || strcmp(a, "localhost") == 0 || strcmp(a, "::1") == 0 ||
           strcmp(a, "[::1]") == 0 || strcmp(a, "lo") == 0;
}

ps_role_t ps_role_parse(const char *name)
{
    for (int r = PS_ROLE_WORKER; r <= PS_ROLE_SHARD; r++)
        if (name && strcmp(name, role_names[r]) == 0)
            return (ps_role_t)r;
    return PS_ROLE_NONE;
}

/* A Z85 key as ZeroMQ accepts it: 40 characters that decode to 32 bytes. */
static bool valid_z85_key(const char *s)
{
    uint8_t bin[32];
    return strlen(s) == PS_Z85_KEY_LEN && zmq_z85_decode(bin, s) != NULL;
}

static int write_key_file(const char *path, mode_t mode, const char *text, ps_errbuf_t *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        return ps_err_set(err, PS_EIO, "cannot create '%s': %s", path, strerror(errno));
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int saved = errno;
    if (close(fd) != 0 || n != (ssize_t)len) {
        unlink(path);
        return ps_err_set(err, PS_EIO, "cannot write '%s': %s", path, strerror(saved));
    }
    return PS_OK;
}

int ps_curve_keygen(const char *base, ps_curve_keys_t *keys, ps_errbuf_t *err)
{
    ps_curve_keys_t k;
    if (zmq_curve_keypair(k.public_z85, k.secret_z85) != 0)
        return ps_err_set(err, PS_EINVAL, "this libzmq cannot make CURVE keys: %s",
                          zmq_strerror(zmq_errno()));
    char pub_path[1024], sec_path[1024], text[256];
    snprintf(pub_path, sizeof pub_path, "%s.pub", base);
    snprintf(sec_path, sizeof sec_path, "%s.secret", base);
    snprintf(text, sizeof text,
             "# ps CURVE secret key: keep it private (mode 0600), never copy it off its host\n"
             "public %s\nsecret %s\n",
             k.public_z85, k.secret_z85);
    int rc = write_key_file(sec_path, 0600, text, err);
    if (rc != PS_OK)
        return rc;
    snprintf(text, sizeof text,
             "# ps CURVE public key: give it to the servers' allow-list\npublic %s\n",
             k.public_z85);
    rc = write_key_file(pub_path, 0644, text, err);
    if (rc != PS_OK) {
        unlink(sec_path);
        return rc;
    }
    if (keys)
        *keys = k;
    return PS_OK;
}

int ps_curve_load(const char *path, bool want_secret, ps_curve_keys_t *keys, ps_errbuf_t *err)
{
    memset(keys, 0, sizeof *keys);
    FILE *f = fopen(path, "r");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot read key file '%s': %s", path, strerror(errno));
    struct stat st;
    if (want_secret && fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
        fclose(f);
        return ps_err_set(err, PS_EINVAL,
                          "secret key file '%s' is readable by others (mode %03o): chmod 600 it",
                          path, (unsigned)(st.st_mode & 0777));
    }
    char line[256];
    int lineno = 0, rc = PS_OK;
    while (rc == PS_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char word[16], key[128];
        int n = sscanf(line, " %15s %127s", word, key);
        if (n <= 0 || word[0] == '#')
            continue;
        char *dst = NULL;
        if (n == 2 && strcmp(word, "public") == 0)
            dst = keys->public_z85;
        else if (n == 2 && strcmp(word, "secret") == 0)
            dst = keys->secret_z85;
        if (!dst)
            rc = ps_err_set(err, PS_EFORMAT, "%s:%d: expected 'public KEY' or 'secret KEY'", path,
                            lineno);
        else if (!valid_z85_key(key))
            rc = ps_err_set(err, PS_EFORMAT, "%s:%d: not a 40-character Z85 CURVE key", path,
                            lineno);
        else
            memcpy(dst, key, PS_Z85_KEY_LEN + 1);
    }
    fclose(f);
    if (rc != PS_OK)
        return rc;
    if (want_secret && !keys->secret_z85[0])
        return ps_err_set(err, PS_EFORMAT, "%s: no 'secret KEY' line (is this the .pub file?)",
                          path);
    if (!want_secret && !keys->public_z85[0])
        return ps_err_set(err, PS_EFORMAT, "%s: no 'public KEY' line", path);
    if (want_secret) {
        char derived[PS_Z85_KEY_LEN + 1];
        if (zmq_curve_public(derived, keys->secret_z85) != 0)
            return ps_err_set(err, PS_EFORMAT, "%s: secret key rejected by libzmq", path);
        if (keys->public_z85[0] && strcmp(derived, keys->public_z85) != 0)
            return ps_err_set(err, PS_EFORMAT, "%s: public key does not match the secret key",
                              path);
        memcpy(keys->public_z85, derived, sizeof derived);
    }
    return PS_OK;
}

/* ---- allow-list ---------------------------------------------------------- */

typedef struct {
    char key[PS_Z85_KEY_LEN + 1];
    ps_role_t role;
    char name[64];
} allow_entry_t;

typedef struct {
    allow_entry_t *entries; /* sorted by key */
    size_t n;
} allow_list_t;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const allow_entry_t *)a)->key, ((const allow_entry_t *)b)->key);
}

static int load_allow_list(const char *path, allow_list_t *out, ps_errbuf_t *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot read allow-list '%s': %s", path, strerror(errno));
    allow_list_t list = {0};
    size_t cap = 0;
    char line[512];
    int lineno = 0, rc = PS_OK;
    while (rc == PS_OK && fgets(line, sizeof line, f)) {
        lineno++;
        /* '#' is a Z85 character: a comment is a word that starts with it */
        char role[32], key[128], name[64] = "";
        int n = sscanf(line, " %31s %127s %63s", role, key, name);
        if (n <= 0 || role[0] == '#')
            continue;
        if (n == 3 && name[0] == '#')
            n = 2;
        allow_entry_t e = {.role = ps_role_parse(role)};
        if (n < 2)
            rc = ps_err_set(err, PS_EFORMAT, "%s:%d: expected 'ROLE KEY [NAME]'", path, lineno);
        else if (e.role == PS_ROLE_NONE)
            rc = ps_err_set(err, PS_EFORMAT,
                            "%s:%d: unknown role '%s' (worker, admin, monitor or shard)", path,
                            lineno, role);
        else if (!valid_z85_key(key))
            rc = ps_err_set(err, PS_EFORMAT, "%s:%d: not a 40-character Z85 CURVE key", path,
                            lineno);
        if (rc != PS_OK)
            break;
        memcpy(e.key, key, sizeof e.key);
        snprintf(e.name, sizeof e.name, "%s", n == 3 ? name : "-");
        if (list.n == cap) {
            cap = cap ? cap * 2 : 16;
            list.entries = ps_xrealloc(list.entries, cap * sizeof *list.entries);
        }
        list.entries[list.n++] = e;
    }
    fclose(f);
    if (rc == PS_OK && list.n) {
        qsort(list.entries, list.n, sizeof *list.entries, cmp_entry);
        for (size_t i = 1; i < list.n; i++)
            if (strcmp(list.entries[i - 1].key, list.entries[i].key) == 0) {
                rc = ps_err_set(err, PS_EFORMAT, "%s: key %s is listed twice", path,
                                list.entries[i].key);
                break;
            }
    }
    if (rc != PS_OK) {
        free(list.entries);
        return rc;
    }
    *out = list;
    return PS_OK;
}

static const allow_entry_t *find_entry(const allow_list_t *list, const char *key)
{
    allow_entry_t probe;
    snprintf(probe.key, sizeof probe.key, "%s", key);
    return list->n ? bsearch(&probe, list->entries, list->n, sizeof probe, cmp_entry) : NULL;
}

/* ---- ZAP handler ----------------------------------------------------------- */

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define LOGGED_MAX 1024

struct ps_zap {
    void *sock;
    pthread_t thread;
    atomic_int stop;
    atomic_uint_fast64_t accepted, refused;
    char path[1024];
    pthread_mutex_t lock; /* guards list */
    allow_list_t list;
    /* refused keys already logged (the handler thread's alone) */
    char (*logged)[PS_Z85_KEY_LEN + 1];
    size_t n_logged;
};

static bool already_logged(ps_zap_t *zap, const char *key)
{
    for (size_t i = 0; i < zap->n_logged; i++)
        if (strcmp(zap->logged[i], key) == 0)
            return true;
    if (zap->n_logged < LOGGED_MAX)
        memcpy(zap->logged[zap->n_logged++], key, PS_Z85_KEY_LEN + 1);
    return false;
}

static void send_str(void *sock, const char *s, int more)
{
    zmq_send(sock, s, strlen(s), more ? ZMQ_SNDMORE : 0);
}

/* One ZAP request (RFC 27): version, request id, domain, address, routing
 * id, mechanism, credentials...; the reply echoes the request id. */
static void answer(ps_zap_t *zap)
{
    zmq_msg_t parts[8];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t scratch, *m = n < 8 ? &parts[n] : &scratch;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, zap->sock, 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        if (m == &scratch)
            zmq_msg_close(m);
        n += n < 8;
    }
    char request_id[64] = "", address[64] = "?", mechanism[16] = "";
#define PART_STR(i, buf)                                                                           \
    if (n > (i)) {                                                                                 \
        size_t len =                                                                               \
            zmq_msg_size(&parts[i]) < sizeof(buf) - 1 ? zmq_msg_size(&parts[i]) : sizeof(buf) - 1; \
        memcpy(buf, zmq_msg_data(&parts[i]), len);                                                 \
        buf[len] = '\0';                                                                           \
    }
    PART_STR(1, request_id)
    PART_STR(3, address)
    PART_STR(5, mechanism)
#undef PART_STR
    char key[PS_Z85_KEY_LEN + 1] = "", user_id[PS_Z85_KEY_LEN + 16] = "";
    const char *status = "400", *text = "key not on the allow-list";
    if (n >= 7 && strcmp(mechanism, "CURVE") == 0 && zmq_msg_size(&parts[6]) == 32) {
        zmq_z85_encode(key, zmq_msg_data(&parts[6]), 32);
        pthread_mutex_lock(&zap->lock);
        const allow_entry_t *e = find_entry(&zap->list, key);
        if (e) {
            status = "200";
            text = "OK";
            snprintf(user_id, sizeof user_id, "%s:%s", ps_role_name(e->role), key);
        }
        pthread_mutex_unlock(&zap->lock);
    } else {
        text = "only CURVE is accepted";
    }
    if (*status == '2') {
        atomic_fetch_add(&zap->accepted, 1);
    } else {
        atomic_fetch_add(&zap->refused, 1);
        if (!already_logged(zap, key))
            ps_log(PS_LOG_WARN, "refused %s client from %s with key %s: %s", mechanism, address,
                   *key ? key : "(none)", text);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
    send_str(zap->sock, "1.0", 1);
    send_str(zap->sock, request_id, 1);
    send_str(zap->sock, status, 1);
    send_str(zap->sock, text, 1);
    send_str(zap->sock, user_id, 1);
    send_str(zap->sock, "", 0);
}

static void *zap_run(void *arg)
{
    ps_zap_t *zap = arg;
    zmq_pollitem_t item = {zap->sock, 0, ZMQ_POLLIN, 0};
    while (!atomic_load(&zap->stop)) {
        if (zmq_poll(&item, 1, 100) > 0)
            answer(zap);
    }
    return NULL;
}

ps_zap_t *ps_zap_start(void *ctx, const char *allow_path, ps_errbuf_t *err)
{
    ps_zap_t *zap = ps_xcalloc(1, sizeof *zap);
    snprintf(zap->path, sizeof zap->path, "%s", allow_path);
    if (load_allow_list(allow_path, &zap->list, err) != PS_OK) {
        free(zap);
        return NULL;
    }
    zap->logged = ps_xcalloc(LOGGED_MAX, sizeof *zap->logged);
    pthread_mutex_init(&zap->lock, NULL);
    atomic_init(&zap->stop, 0);
    atomic_init(&zap->accepted, 0);
    atomic_init(&zap->refused, 0);
    zap->sock = zmq_socket(ctx, ZMQ_REP);
    int zero = 0;
    zmq_setsockopt(zap->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(zap->sock, ZAP_ENDPOINT) != 0) {
        ps_err_set(err, PS_ENET, "cannot bind the ZAP handler at %s: %s", ZAP_ENDPOINT,
                   zmq_strerror(zmq_errno()));
        zmq_close(zap->sock);
        zap->sock = NULL;
        ps_zap_stop(&zap);
        return NULL;
    }
    /* pthread_create is a full barrier: the socket moves to the thread */
    if (pthread_create(&zap->thread, NULL, zap_run, zap) != 0) {
        ps_err_set(err, PS_ENOMEM, "cannot start the ZAP thread");
        zmq_close(zap->sock);
        zap->sock = NULL;
        ps_zap_stop(&zap);
        return NULL;
    }
    ps_log(PS_LOG_INFO, "CURVE on: %zu keys allowed by '%s'", zap->list.n, allow_path);
    return zap;
}

int ps_zap_reload(ps_zap_t *zap, ps_errbuf_t *err)
{
    allow_list_t fresh;
    int rc = load_allow_list(zap->path, &fresh, err);
    if (rc != PS_OK)
        return rc;
    pthread_mutex_lock(&zap->lock);
    allow_list_t old = zap->list;
    zap->list = fresh;
    pthread_mutex_unlock(&zap->lock);
    free(old.entries);
    return PS_OK;
}

/* The key part of "ROLE:KEY", or NULL. */
static const char *user_id_key(const char *user_id)
{
    const char *colon = user_id ? strchr(user_id, ':') : NULL;
    return colon && strlen(colon + 1) == PS_Z85_KEY_LEN ? colon + 1 : NULL;
}

ps_role_t ps_zap_role(ps_zap_t *zap, const char *user_id)
{
    const char *key = user_id_key(user_id);
    if (!key)
        return PS_ROLE_NONE;
    pthread_mutex_lock(&zap->lock);
    const allow_entry_t *e = find_entry(&zap->list, key);
    ps_role_t role = e ? e->role : PS_ROLE_NONE;
    pthread_mutex_unlock(&zap->lock);
    return role;
}

void ps_zap_name(ps_zap_t *zap, const char *user_id, char *buf, size_t cap)
{
    const char *key = user_id_key(user_id);
    buf[0] = '\0';
    if (!key)
        return;
    pthread_mutex_lock(&zap->lock);
    const allow_entry_t *e = find_entry(&zap->list, key);
    if (e)
        snprintf(buf, cap, "%s", e->name);
    pthread_mutex_unlock(&zap->lock);
}

uint64_t ps_zap_accepted(const ps_zap_t *zap)
{
    return atomic_load(&((ps_zap_t *)zap)->accepted);
}

uint64_t ps_zap_refused(const ps_zap_t *zap)
{
    return atomic_load(&((ps_zap_t *)zap)->refused);
}

size_t ps_zap_keys(ps_zap_t *zap)
{
    pthread_mutex_lock(&zap->lock);
    size_t n = zap->list.n;
    pthread_mutex_unlock(&zap->lock);
    return n;
}

void ps_zap_stop(ps_zap_t **zapp)
{
    ps_zap_t *zap = *zapp;
    if (!zap)
        return;
    if (zap->sock) {
        atomic_store(&zap->stop, 1);
        pthread_join(zap->thread, NULL);
        zmq_close(zap->sock);
    }
    pthread_mutex_destroy(&zap->lock);
    free(zap->list.entries);
    free(zap->logged);
    free(zap);
    *zapp = NULL;
}

/* ---- sockets ---- */

int ps_curve_server_socket(void *sock, const char *secret_z85, ps_errbuf_t *err)
{
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_z85, PS_Z85_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "ps", 2) != 0)
        return ps_err_set(err, PS_ENET, "cannot enable CURVE: %s", zmq_strerror(zmq_errno()));
    return PS_OK;
}

int ps_curve_client_socket(void *sock, const char *server_z85, const char *public_z85,
                           const char *secret_z85, ps_errbuf_t *err)
{
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_z85, PS_Z85_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, public_z85, PS_Z85_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_z85, PS_Z85_KEY_LEN) != 0)
        return ps_err_set(err, PS_ENET, "cannot enable CURVE: %s", zmq_strerror(zmq_errno()));
    return PS_OK;
}

void *ps_handshake_monitor(void *ctx, void *sock)
{
    static atomic_uint next_id;
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://ps-handshakes-%p-%u", sock, atomic_fetch_add(&next_id, 1));
    if (zmq_socket_monitor(sock, ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0)
        return NULL;
    void *m = zmq_socket(ctx, ZMQ_PAIR);
    int zero = 0;
    zmq_setsockopt(m, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(m, ep) != 0) {
        zmq_close(m);
        return NULL;
    }
    return m;
}

int ps_handshake_read(void *monitor, ps_handshake_event_t *ev)
{
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, monitor, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return PS_EAGAIN;
    }
    *ev = (ps_handshake_event_t){0};
    if (zmq_msg_size(&part) >= 6) {
        memcpy(&ev->event, zmq_msg_data(&part), 2);
        memcpy(&ev->value, (char *)zmq_msg_data(&part) + 2, 4);
    }
    /* the second part is the endpoint; any further parts are read and dropped */
    for (int k = 0; zmq_msg_more(&part) && zmq_msg_recv(&part, monitor, 0) >= 0; k++)
        if (k == 0)
            snprintf(ev->addr, sizeof ev->addr, "%.*s", (int)zmq_msg_size(&part),
                     (const char *)zmq_msg_data(&part));
    zmq_msg_close(&part);
    return PS_OK;
}
