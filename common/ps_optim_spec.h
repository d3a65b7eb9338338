/* ps_optim_spec.h - what a table's server-side optimizer is, as chosen by the
 * job: built by the worker from its config, sent with INIT_TABLE, applied by
 * the server. The plain spec is in ps_optim_types.h (installed with the
 * client API); this adds its wire form. Plain data; any thread. */
#ifndef PS_OPTIM_SPEC_H
#define PS_OPTIM_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include "ps.pb-c.h"
#include "ps_enum.h"

#include "ps_optim_types.h"

/* Copies between the plain spec and its wire form (wire fields borrowed). */
void ps_optim_spec_to_wire(const ps_optim_spec_t *spec, Ps__OptimSpec *wire);
void ps_optim_spec_from_wire(const Ps__OptimSpec *wire, ps_optim_spec_t *spec);

#endif
