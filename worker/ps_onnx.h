/* ps_onnx.h - a trained net as an ONNX model: the graph its spec expands
 * to in standard operators of opset 17 (MatMul, Add, Conv, MaxPool,
 * AveragePool, Flatten, Relu, Tanh, Sigmoid, Erf, LayerNormalization,
 * Gather, Split, Reshape, Transpose, Softmax), its tables as initializers,
 * the logits the loss reads as the one output. The messages come from
 * protobuf-c code generated at build time from the onnx.proto of Debian's
 * python3-onnx. Worker thread (or a tool's). */
#ifndef PS_ONNX_H
#define PS_ONNX_H

#include <stdbool.h>

#include "ps_err.h"
#include "ps_net.h"
#include "ps_netspec.h"

/* False if this build has no ONNX messages (onnx.proto was not found when
 * it was configured). */
bool ps_onnx_available(void);

/* Writes net (built from desc) to path as an ONNX model, replaced
 * atomically. Input "x" (float, batch x the input shape: [N, 784],
 * [N, C, H, W], [N, T, F]) or "tokens" (int64, [N, T]); output "logits"
 * (float, [N, ...the output shape]). PS_EIO with err naming the file;
 * PS_EINVAL if the build has no ONNX support. */
int ps_onnx_write(const char *path, const ps_netdesc_t *desc, const ps_net_t *net,
                  ps_errbuf_t *err);

#endif
