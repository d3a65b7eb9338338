/* ps_wire.c - multipart send/receive helpers over libzmq. */
#include "ps_wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ps_err.h"
#include "ps_half.h"

static void free_heap(void *data, void *hint)
{
    (void)hint;
    free(data);
}

int ps_wire_recv(void *sock, ps_wire_msg_t *m, int flags)
{
    int rc = PS_OK, more = 1;
    m->n_parts = 0;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, m->n_parts ? 0 : flags) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&part);
            if (e == EAGAIN && m->n_parts == 0)
                return PS_EAGAIN;
            return PS_ENET;
        }
        more = zmq_msg_more(&part);
        if (m->n_parts < PS_WIRE_MAX_PARTS) {
            m->parts[m->n_parts++] = part;
        } else {
            zmq_msg_close(&part);
            rc = PS_EPROTO;
        }
    }
    return rc;
}

void ps_wire_msg_close(ps_wire_msg_t *m)
{
    for (int i = 0; i < m->n_parts; i++)
        zmq_msg_close(&m->parts[i]);
    m->n_parts = 0;
}

size_t ps_wire_msg_bytes(const ps_wire_msg_t *m)
{
    size_t n = 0;
    for (int i = 0; i < m->n_parts; i++)
        n += zmq_msg_size((zmq_msg_t *)&m->parts[i]);
    return n;
}

Ps__Header *ps_wire_unpack_header(zmq_msg_t *part)
{
    return ps__header__unpack(NULL, zmq_msg_size(part), zmq_msg_data(part));
}

int ps_wire_send_msg(void *sock, zmq_msg_t *msg, int more)
{
    int n = zmq_msg_send(msg, sock, more ? ZMQ_SNDMORE : 0);
    if (n < 0) {
        zmq_msg_close(msg);
        return PS_ENET;
    }
    return n;
}

int ps_wire_send_header(void *sock, const Ps__Header *h, int more)
{
    size_t len = ps__header__get_packed_size(h);
    zmq_msg_t msg;
    if (zmq_msg_init_size(&msg, len) != 0)
        return PS_ENOMEM;
    ps__header__pack(h, zmq_msg_data(&msg));
    return ps_wire_send_msg(sock, &msg, more);
}

int ps_wire_send_copy(void *sock, const void *buf, size_t len, int more)
{
    zmq_msg_t msg;
    if (zmq_msg_init_size(&msg, len) != 0)
        return PS_ENOMEM;
    if (len)
        memcpy(zmq_msg_data(&msg), buf, len);
    return ps_wire_send_msg(sock, &msg, more);
}

int ps_wire_align(zmq_msg_t *part)
{
    if (((uintptr_t)zmq_msg_data(part) & 7u) == 0)
        return PS_OK;
    zmq_msg_t copy;
    size_t len = zmq_msg_size(part);
    if (zmq_msg_init_size(&copy, len) != 0)
        return PS_ENOMEM;
    if (((uintptr_t)zmq_msg_data(&copy) & 7u) != 0) {
        /* a small frame stored inside the message: the struct itself is only
         * 8-byte aligned, so a short copy may still be off; give it a heap
         * buffer of its own */
        zmq_msg_close(&copy);
        void *buf = malloc(len ? len : 1);
        if (!buf)
            return PS_ENOMEM;
        zmq_msg_init_data(&copy, buf, len, free_heap, NULL);
    }
    memcpy(zmq_msg_data(&copy), zmq_msg_data(part), len);
    zmq_msg_close(part);
    zmq_msg_init(part);
    zmq_msg_move(part, &copy);
    return PS_OK;
}

int ps_wire_decode(int dtype, const void *src, float *dst, uint64_t n, float inv_scale)
{
    if (dtype == PS__DTYPE__F32) {
        memcpy(dst, src, n * sizeof(float));
        for (uint64_t i = 0; inv_scale != 1.0f && i < n; i++)
            dst[i] *= inv_scale;
        return PS_OK;
    }
    if (dtype != PS__DTYPE__F16 && dtype != PS__DTYPE__BF16)
        return PS_EPROTO;
    /* frame bytes may sit at an odd address: those go through a bounce
     * buffer so the u16 reads are aligned */
    uint16_t bounce[4096];
    for (uint64_t i = 0; i < n; i += 4096) {
        uint64_t m = n - i < 4096 ? n - i : 4096;
        const uint16_t *s = (const uint16_t *)src + i;
        if ((uintptr_t)src & 1u) {
            memcpy(bounce, (const char *)src + i * 2, m * 2);
            s = bounce;
        }
        if (dtype == PS__DTYPE__F16) {
            ps_f16_to_f32_scaled_n(s, dst + i, m, inv_scale);
            continue;
        }
        ps_bf16_to_f32_n(s, dst + i, m);
        for (uint64_t k = 0; inv_scale != 1.0f && k < m; k++)
            dst[i + k] *= inv_scale;
    }
    return PS_OK;
}

int ps_wire_encode(int dtype, const float *src, void *dst, uint64_t n, float scale)
{
    switch (dtype) {
    case PS__DTYPE__F32:
        memcpy(dst, src, n * sizeof(float));
        return PS_OK;
    case PS__DTYPE__F16:
        if (scale == 1.0f)
            ps_f32_to_f16_n(src, dst, n);
        else
            ps_f32_to_f16_scaled_n(src, dst, n, scale);
        return PS_OK;
    case PS__DTYPE__BF16:
        ps_f32_to_bf16_n(src, dst, n);
        return PS_OK;
    }
    return PS_EPROTO;
}

int ps_wire_to_f32(zmq_msg_t *part, int dtype, uint64_t n, double scale)
{
    float inv = scale == 0.0 ? 1.0f : (float)(1.0 / scale);
    if (dtype == PS__DTYPE__F32) {
        int rc = ps_wire_align(part);
        if (rc == PS_OK && inv != 1.0f) {
            float *v = zmq_msg_data(part);
            for (uint64_t i = 0; i < n; i++)
                v[i] *= inv;
        }
        return rc;
    }
    if (!ps_dtype_size(dtype))
        return PS_EPROTO;
    zmq_msg_t out;
    if (zmq_msg_init_size(&out, n * sizeof(float)) != 0)
        return PS_ENOMEM;
    ps_wire_decode(dtype, zmq_msg_data(part), zmq_msg_data(&out), n, inv);
    zmq_msg_close(part);
    zmq_msg_init(part);
    zmq_msg_move(part, &out);
    return ps_wire_align(part);
}

int ps_wire_from_f32(zmq_msg_t *msg, int dtype, const float *values, uint64_t n)
{
    size_t size = ps_dtype_size(dtype);
    if (!size)
        return PS_EPROTO;
    if (zmq_msg_init_size(msg, n * size) != 0)
        return PS_ENOMEM;
    return ps_wire_encode(dtype, values, zmq_msg_data(msg), n, 1.0f);
}

size_t ps_dtype_size(int dtype)
{
    switch (dtype) {
    case PS__DTYPE__F32:
        return 4;
    case PS__DTYPE__F16:
    case PS__DTYPE__BF16:
        return 2;
    }
    return 0;
}

const char *ps_op_name(int op)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&ps__op__descriptor, op);
    return v ? v->name : "UNKNOWN_OP";
}
