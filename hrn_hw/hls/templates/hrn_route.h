// Projection comparator and residue: energies on every unit's basis, masked argmax (lowest
// index on ties), residue r = h - B^T c (golden: ops.project, ops.select, ops.residue).
#ifndef HRN_ROUTE_H_
#define HRN_ROUTE_H_

#include "hrn_fixed.h"

namespace hrn {

// Coefficients c[u][i] = convert(sum_j B[u][i][j] h[j]) and energies e[u] = sum_i c[u][i]^2.
// bases: raw integers of format B.
template <int M, int MB, int S, class H, class B, class C, class ACC, class E, class BRAW>
void project(const H h[S], const BRAW bases[M][MB][S], C coef[M][MB], E energy[M]) {
Units:
    for (int u = 0; u < M; u++) {
        E eu = 0;
    Vectors:
        for (int i = 0; i < MB; i++) {
            ACC acc = 0;
        Dot:
            for (int j = 0; j < S; j++) {
                #pragma HLS PIPELINE II=1
                acc += from_raw<B>(bases[u][i][j]) * h[j];
            }
            coef[u][i] = C(acc);
            eu += coef[u][i] * coef[u][i];
        }
        energy[u] = eu;
    }
}

// The allowed unit of largest energy, lowest index on ties; -1 if none is allowed.
template <int M, class E> int select_unit(const E energy[M], const bool allowed[M]) {
    int best = -1;
    E best_e = 0;
Compare:
    for (int u = 0; u < M; u++) {
        if (allowed[u] && (best < 0 || energy[u] > best_e)) {
            best = u;
            best_e = energy[u];
        }
    }
    return best;
}

// r = convert(h - sum_i c[i] B[i]); returns sum r^2 as an exact integer (residue raw units).
template <int MB, int S, class H, class B, class C, class DIFF, class R, class BRAW>
ap_uint<64> residue(const H h[S], const BRAW basis[MB][S], const C coef[MB], R r[S]) {
    ap_uint<64> rr = 0;
Residue:
    for (int j = 0; j < S; j++) {
        #pragma HLS PIPELINE II=1
        DIFF d = h[j];
        for (int i = 0; i < MB; i++) d -= from_raw<B>(basis[i][j]) * coef[i];
        r[j] = R(d);
        ap_int<R::width> raw = to_raw<ap_int<R::width> >(r[j]);
        rr += ap_uint<64>(ap_int<64>(raw) * ap_int<64>(raw));
    }
    return rr;
}

} // namespace hrn

#endif
