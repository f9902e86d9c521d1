// Hash unit: index feature hashing phi_k and L2 normalisation (docs/design.md section 2).
#ifndef HRN_HASH_H_
#define HRN_HASH_H_

#include "hrn_fixed.h"

namespace hrn {

// phi[b] = sum of +-y[j] over the flat indices j (CHW order) that hash to bucket b.
// y holds raw integers of the map's format; phi is exact in the same scale.
template <int S, int NMAX, class RAW, class PHI> void feature_hash(const RAW y[NMAX], int n, ap_uint<32> seed, PHI phi[S]) {
HashClear:
    for (int b = 0; b < S; b++) phi[b] = 0;
HashAcc:
    for (int j = 0; j < n; j++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=NMAX
        uint32_t u = fmix32(fmix32((uint32_t)j) ^ (uint32_t)seed.to_uint());
        int b = (int)(((uint64_t)u * (uint64_t)S) >> 32);
        if (u & 1u) phi[b] -= PHI(y[j]);
        else phi[b] += PHI(y[j]);
    }
}

// h = phi / ||phi||: E = sum phi^2 in EW bits (exact: ops.energy_width), inv = floor(2^K / sqrt(E)),
// h_j = convert(phi_j * inv, K). A zero phi gives h = 0 (golden: ops.normalise).
template <int S, int K, int EW, class PHI, class H> void normalise(const PHI phi[S], H h[S]) {
    ap_uint<EW> e = 0;
NormEnergy:
    for (int j = 0; j < S; j++) {
        #pragma HLS PIPELINE II=1
        e += ap_uint<EW>(ap_int<EW>(phi[j]) * ap_int<EW>(phi[j]));
    }
    ap_uint<K + 1> inv = 0;
    if (e != 0) inv = inv_sqrt<K, EW>(e);
NormScale:
    for (int j = 0; j < S; j++) {
        #pragma HLS PIPELINE II=1
        ap_int<K + 2 + PHI::width> prod = ap_int<K + 2 + PHI::width>(phi[j]) * ap_int<K + 2>(inv);
        h[j] = convert_int<H, K + 2 + PHI::width, K>(prod);
    }
}

} // namespace hrn

#endif
