// hrn-hw fixed-point primitives shared by every generated HLS project (docs/fixed_point.md).
// Each function mirrors one function of hrn_hw/fixedpoint (the golden model) bit for bit.
#ifndef HRN_FIXED_H_
#define HRN_FIXED_H_

#include "ap_fixed.h"
#include "ap_int.h"

#include <stdint.h>

namespace hrn {

// An exact integer `acc` carrying F fraction bits, converted to OUT (an ap_fixed whose AP_RND /
// AP_TRN and AP_SAT modes are the format's rounding and overflow): golden fmt.convert.
template <class OUT, int W, int F> OUT convert_int(ap_int<W> acc) {
    #pragma HLS INLINE
    ap_fixed<W, W - F> v;
    v.range(W - 1, 0) = acc.range(W - 1, 0);
    return OUT(v);
}

// Raw two's-complement bits of a fixed-point value, sign-extended to RAW (an ap_int).
template <class RAW, class T> RAW to_raw(T v) {
    #pragma HLS INLINE
    ap_int<T::width> bits;
    bits.V = v.V;
    return RAW(bits);
}

// The fixed-point value whose raw bits are the low T::width bits of r (widths <= 64).
template <class T> T from_raw(long long r) {
    #pragma HLS INLINE
    T v;
    v.setBits((ap_ulong)r);
    return v;
}
template <class T, int W> T from_raw(ap_int<W> r) {
    #pragma HLS INLINE
    return from_raw<T>((long long)r.to_int64());
}

// MurmurHash3's 32-bit finaliser (plain 32-bit unsigned arithmetic, wraps mod 2^32).
inline uint32_t fmix32(uint32_t h) {
    #pragma HLS INLINE
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

// floor(sqrt(x)), one result bit per step (golden: math.isqrt).
template <int W> ap_uint<(W + 1) / 2> isqrt(ap_uint<W> x) {
    ap_uint<(W + 1) / 2> res = 0;
ISqrt:
    for (int b = (W + 1) / 2 - 1; b >= 0; b--) {
        ap_uint<(W + 1) / 2> cand = res;
        cand[b] = 1;
        if (ap_uint<W + 1>(cand) * ap_uint<W + 1>(cand) <= ap_uint<W + 1>(x)) res = cand;
    }
    return res;
}

// floor(2**K / sqrt(e)) for e > 0, as isqrt(floor(2**(2K) / e)) (golden: ops.inv_sqrt).
template <int K, int EW> ap_uint<K + 1> inv_sqrt(ap_uint<EW> e) {
    ap_uint<2 * K + 1> num = 0;
    num[2 * K] = 1;
    ap_uint<2 * K + 1> q = num / e;
    return ap_uint<K + 1>(isqrt<2 * K + 1>(q));
}

} // namespace hrn

#endif
