/*
 * proto.c — the table of protocols (proto.h).
 */
#include "proto.h"

const enr_proto_ops *
enr_proto_get(int proto)
{
    switch (proto) {
    case ENR_PROTO_EST:
        return &enr_proto_est;
    case ENR_PROTO_CMP:
        return &enr_proto_cmp;
    case ENR_PROTO_ACME:
        return &enr_proto_acme;
    default:
        return &enr_proto_scep;
    }
}
