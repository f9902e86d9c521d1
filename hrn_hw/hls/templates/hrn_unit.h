// Conv unit building blocks: channel folding, convolution with zero padding (and bottom/right
// padding up to the kernel), max and average pooling (golden: ops.fold_channels, ops.conv2d,
// ops.maxpool, hrn_hw.layers.avgpool.avgpool).
// Activations use hls4ml's nnet::leaky_relu.
#ifndef HRN_UNIT_H_
#define HRN_UNIT_H_

#include "hrn_fixed.h"

namespace hrn {

// Fold C channels to CI: channel c sums channels c, c + CI, ... (missing ones are zero).
template <int C, int CI, int HW, class IN, class OUT> void fold_channels(const IN x[C * HW], OUT y[CI * HW]) {
Fold:
    for (int ci = 0; ci < CI; ci++) {
        for (int p = 0; p < HW; p++) {
            OUT acc = 0;
            for (int c = ci; c < C; c += CI) acc += x[c * HW + p];
            y[ci * HW + p] = acc;
        }
    }
}

// y[o][oy][ox] = convert(b[o] + sum x * w) over the window; positions outside the map are zero.
// w and b hold raw integers of formats WT and BT (a ROM of plain integers).
template <int C, int H, int W, int O, int K, int STRIDE, int PAD, int HO, int WO, class IN, class WT, class BT,
          class ACC, class OUT, class WRAW, class BRAW>
void conv2d(const IN x[C * H * W], const WRAW w[O * C * K * K], const BRAW b[O], OUT y[O * HO * WO]) {
    WT wt[O * C * K * K];
ConvWeights:
    for (int i = 0; i < O * C * K * K; i++) wt[i] = from_raw<WT>(w[i]);
ConvOut:
    for (int o = 0; o < O; o++) {
        for (int oy = 0; oy < HO; oy++) {
            for (int ox = 0; ox < WO; ox++) {
                #pragma HLS PIPELINE II=1
                ACC acc = from_raw<BT>(b[o]);
            ConvWin:
                for (int c = 0; c < C; c++) {
                    for (int ky = 0; ky < K; ky++) {
                        for (int kx = 0; kx < K; kx++) {
                            int iy = oy * STRIDE + ky - PAD, ix = ox * STRIDE + kx - PAD;
                            if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                acc += x[(c * H + iy) * W + ix] * wt[((o * C + c) * K + ky) * K + kx];
                        }
                    }
                }
                y[(o * HO + oy) * WO + ox] = OUT(acc);
            }
        }
    }
}

// Max over K x K windows; positions beyond the map (a map smaller than the kernel) count as 0.
template <int C, int H, int W, int K, int STRIDE, int HO, int WO, class T> void maxpool(const T x[C * H * W], T y[C * HO * WO]) {
Pool:
    for (int c = 0; c < C; c++) {
        for (int oy = 0; oy < HO; oy++) {
            for (int ox = 0; ox < WO; ox++) {
                T m = 0;
                bool first = true;
                for (int ky = 0; ky < K; ky++) {
                    for (int kx = 0; kx < K; kx++) {
                        int iy = oy * STRIDE + ky, ix = ox * STRIDE + kx;
                        T v = (iy < H && ix < W) ? x[(c * H + iy) * W + ix] : T(0);
                        if (first || v > m) m = v;
                        first = false;
                    }
                }
                y[(c * HO + oy) * WO + ox] = m;
            }
        }
    }
}

// Average over K x K windows: the exact window sum S (positions beyond a map smaller than the
// kernel count as 0) in ACC, an ap_fixed with T's fraction bits wide enough for K*K values of T;
// then floor((S + K*K / 2) / (K*K)) on its raw integer (round half up; C++ division truncates,
// so a negative inexact quotient steps down by one). The result has T's fraction bits and lies
// between the window's extremes: T holds it exactly (golden: hrn_hw.layers.avgpool.avgpool).
template <int C, int H, int W, int K, int STRIDE, int HO, int WO, class T, class ACC>
void avgpool(const T x[C * H * W], T y[C * HO * WO]) {
    const int D = K * K;
AvgPool:
    for (int c = 0; c < C; c++) {
        for (int oy = 0; oy < HO; oy++) {
            for (int ox = 0; ox < WO; ox++) {
                ACC s = 0;
                for (int ky = 0; ky < K; ky++) {
                    for (int kx = 0; kx < K; kx++) {
                        int iy = oy * STRIDE + ky, ix = ox * STRIDE + kx;
                        if (iy < H && ix < W) s += x[(c * H + iy) * W + ix];
                    }
                }
                ap_int<ACC::width + 1> n = to_raw<ap_int<ACC::width + 1> >(s) + D / 2;
                ap_int<ACC::width + 1> q = n / D;
                if (n < 0 && q * D != n) q -= 1;
                y[(c * HO + oy) * WO + ox] = from_raw<T>(q);
            }
        }
    }
}

} // namespace hrn

#endif
