// Property-test harness: every fixed-point primitive of hrn_hw/hls/templates/*.h (and hls4ml's
// nnet::dense / nnet::leaky_relu as the generated project instantiates them) on a fixed set
// of compile-time formats and shapes, driven by a text file of cases.
//
//   prim_harness CASES OUT
//
// CASES: one case per line, "NAME v1 v2 ..." (decimal integers: raw two's-complement values of
// the instantiation's formats, or plain integers). OUT: one line per case, the result integers
// (raw values; unsigned formats as unsigned). NAME picks the instantiation ("conv/CV1", ...);
// tests/test_fixed_primitives.py holds the matching golden formats and checks that each typedef
// below is the string Fmt.c_type() / ctypes_.acc_type() gives (so the two sides cannot drift).
#include "hrn_fixed.h"
#include "hrn_hash.h"
#include "hrn_route.h"
#include "hrn_unit.h"
#include "nnet_utils/nnet_activation.h"
#include "nnet_utils/nnet_dense.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

typedef std::vector<unsigned long long> Args;   // each token as its 64 bits (negatives wrap)

struct Out {
    std::ostringstream s;
    void i(long long v) { s << ' ' << v; }
    void u(unsigned long long v) { s << ' ' << v; }
};

struct Error : std::runtime_error {
    explicit Error(const std::string &m) : std::runtime_error(m) {}
};

static void need(const Args &a, size_t n) {
    if (a.size() != n) throw Error("expected " + std::to_string(n) + " values, got " + std::to_string(a.size()));
}
static long long sv(const Args &a, size_t i) { return (long long)a.at(i); }

// Raw integer of a value: signed formats through the project's to_raw, unsigned ones by bits.
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N> void put(Out &o, const ap_fixed<W, I, Q, O, N> &v) {
    o.i(hrn::to_raw<ap_int<64> >(v).to_int64());
}
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N> void put(Out &o, const ap_ufixed<W, I, Q, O, N> &v) {
    ap_uint<W> bits = v.range(W - 1, 0);
    o.u(bits.to_uint64());
}
template <int W> void put(Out &o, const ap_int<W> &v) { o.i(v.to_int64()); }
template <int W> void put(Out &o, const ap_uint<W> &v) { o.u(v.to_uint64()); }

// ---- formats (golden: FORMATS in tests/test_fixed_primitives.py) ---------------------------
typedef ap_fixed<16, 2, AP_RND, AP_SAT> FA;
typedef ap_fixed<12, -1, AP_RND, AP_SAT> FB;
typedef ap_fixed<16, 6, AP_TRN, AP_SAT> FC;
typedef ap_fixed<8, 10, AP_RND, AP_SAT> FD;
typedef ap_ufixed<10, -3, AP_RND, AP_SAT> FE;
typedef ap_ufixed<6, -3, AP_TRN, AP_SAT> FF;
typedef ap_fixed<24, 16, AP_RND, AP_SAT> FG;
typedef ap_fixed<5, 5, AP_TRN, AP_SAT> FH;
typedef ap_fixed<48, 18, AP_RND, AP_SAT> FI;
typedef ap_fixed<16, 6, AP_RND, AP_SAT> FJ;
typedef ap_fixed<8, 8, AP_RND, AP_SAT> FK;

// ---- convert_int, to_raw / from_raw ---------------------------------------------------------
template <class OUT, int W, int F> void h_convert(const Args &a, Out &o) {
    for (size_t k = 0; k < a.size(); k++) {
        ap_int<W> acc = sv(a, k);
        put(o, hrn::convert_int<OUT, W, F>(acc));
    }
}

template <class T> void h_raw(const Args &a, Out &o) {
    for (size_t k = 0; k < a.size(); k++) {
        T v = hrn::from_raw<T>(sv(a, k));
        T w = hrn::from_raw<T, 40>(ap_int<40>(sv(a, k)));
        if (v != w) throw Error("from_raw overloads disagree");
        put(o, v);
    }
}

// ---- fmix32, feature_hash --------------------------------------------------------------------
static void h_fmix32(const Args &a, Out &o) {
    for (size_t k = 0; k < a.size(); k++) o.u(hrn::fmix32((uint32_t)a[k]));
}

static const int HASH_NMAX = 256;
typedef ap_int<17> hash_raw_t;
typedef ap_int<32> phi_t;
// args: seed, n, y[n] (n <= HASH_NMAX) -> phi[S]
template <int S> void h_hash(const Args &a, Out &o) {
    if (a.size() < 2) throw Error("hash needs seed and n");
    int n = (int)sv(a, 1);
    need(a, 2 + (size_t)n);
    if (n > HASH_NMAX) throw Error("n > NMAX");
    hash_raw_t y[HASH_NMAX];
    for (int j = 0; j < HASH_NMAX; j++) y[j] = j < n ? hash_raw_t(sv(a, 2 + j)) : hash_raw_t(0);
    phi_t phi[S];
    hrn::feature_hash<S, HASH_NMAX, hash_raw_t, phi_t>(y, n, ap_uint<32>((unsigned)a[0]), phi);
    for (int b = 0; b < S; b++) put(o, phi[b]);
}

// ---- isqrt, inv_sqrt, normalise --------------------------------------------------------------
template <int W> void h_isqrt(const Args &a, Out &o) {
    for (size_t k = 0; k < a.size(); k++) put(o, hrn::isqrt<W>(ap_uint<W>(a[k])));
}

template <int K> void h_inv_sqrt(const Args &a, Out &o) {
    for (size_t k = 0; k < a.size(); k++) put(o, hrn::inv_sqrt<K, 64>(ap_uint<64>(a[k])));
}

// args: phi[S] -> h[S]
template <int S, int K, class H> void h_normalise(const Args &a, Out &o) {
    need(a, S);
    phi_t phi[S];
    H h[S];
    for (int j = 0; j < S; j++) phi[j] = phi_t(sv(a, j));
    hrn::normalise<S, K, 64, phi_t, H>(phi, h);
    for (int j = 0; j < S; j++) put(o, h[j]);
}

// ---- project + select_unit, residue ----------------------------------------------------------
typedef ap_fixed<16, 2, AP_RND, AP_SAT> P1_H;
typedef ap_fixed<16, 1, AP_RND, AP_SAT> P1_B;
typedef ap_fixed<16, 2, AP_RND, AP_SAT> P1_C;
typedef ap_fixed<37, 8> P1_ACC;
typedef ap_ufixed<34, 6> P1_E;
typedef ap_fixed<12, -1, AP_RND, AP_SAT> P2_H;
typedef ap_fixed<10, 1, AP_TRN, AP_SAT> P2_B;
typedef ap_fixed<8, 2, AP_TRN, AP_SAT> P2_C;
typedef ap_fixed<26, 4> P2_ACC;
typedef ap_ufixed<18, 6> P2_E;

// args: h[S], bases[M*MB*S], allowed[M] -> coef[M*MB], energy[M], unit
template <int M, int MB, int S, class H, class B, class C, class ACC, class E> void h_project(const Args &a, Out &o) {
    need(a, S + M * MB * S + M);
    H h[S];
    int16_t bases[M][MB][S];
    C coef[M][MB];
    E energy[M];
    bool allowed[M];
    size_t p = 0;
    for (int j = 0; j < S; j++) h[j] = hrn::from_raw<H>(sv(a, p++));
    for (int u = 0; u < M; u++)
        for (int i = 0; i < MB; i++)
            for (int j = 0; j < S; j++) bases[u][i][j] = (int16_t)sv(a, p++);
    for (int u = 0; u < M; u++) allowed[u] = sv(a, p++) != 0;
    hrn::project<M, MB, S, H, B, C, ACC, E, int16_t>(h, bases, coef, energy);
    for (int u = 0; u < M; u++)
        for (int i = 0; i < MB; i++) put(o, coef[u][i]);
    for (int u = 0; u < M; u++) put(o, energy[u]);
    o.i(hrn::select_unit<M, E>(energy, allowed));
}

// args: energy[M] (raw), allowed[M] -> unit
template <int M, class E> void h_select(const Args &a, Out &o) {
    need(a, 2 * M);
    E energy[M];
    bool allowed[M];
    for (int u = 0; u < M; u++) energy[u] = hrn::from_raw<E>(sv(a, u));
    for (int u = 0; u < M; u++) allowed[u] = sv(a, M + u) != 0;
    o.i(hrn::select_unit<M, E>(energy, allowed));
}

typedef ap_fixed<35, 6> R1_DIFF;
typedef ap_fixed<16, 2, AP_RND, AP_SAT> R1_R;
typedef ap_fixed<20, 5> R2_DIFF;
typedef ap_fixed<8, -1, AP_RND, AP_SAT> R2_R;

// args: h[S], basis[MB*S], coef[MB] -> r[S], sum r^2
template <int MB, int S, class H, class B, class C, class DIFF, class R> void h_residue(const Args &a, Out &o) {
    need(a, S + MB * S + MB);
    H h[S];
    int16_t basis[MB][S];
    C coef[MB];
    R r[S];
    size_t p = 0;
    for (int j = 0; j < S; j++) h[j] = hrn::from_raw<H>(sv(a, p++));
    for (int i = 0; i < MB; i++)
        for (int j = 0; j < S; j++) basis[i][j] = (int16_t)sv(a, p++);
    for (int i = 0; i < MB; i++) coef[i] = hrn::from_raw<C>(sv(a, p++));
    ap_uint<64> rr = hrn::residue<MB, S, H, B, C, DIFF, R, int16_t>(h, basis, coef, r);
    for (int j = 0; j < S; j++) put(o, r[j]);
    put(o, rr);
}

// ---- fold_channels, conv2d, maxpool ------------------------------------------------------------
typedef ap_fixed<19, 9> FD1_OUT;              // C=5 -> 2 channels of FJ (3 groups)
typedef ap_ufixed<8, 0, AP_RND, AP_SAT> FD2_IN;
typedef ap_fixed<10, 2> FD2_OUT;              // C=3 -> 2 channels of u8 frac 8 (2 groups)
typedef ap_fixed<15, 2> FD3_OUT;              // C=7 -> 3 channels of FB (3 groups)
typedef ap_fixed<19, 9> FD4_OUT;              // C=3 -> 1 channel of FJ (3 groups)

// args: x[C*HW] -> y[CI*HW]
template <int C, int CI, int HW, class IN, class OUT> void h_fold(const Args &a, Out &o) {
    need(a, C * HW);
    IN x[C * HW];
    OUT y[CI * HW];
    for (int i = 0; i < C * HW; i++) x[i] = hrn::from_raw<IN>(sv(a, i));
    hrn::fold_channels<C, CI, HW, IN, OUT>(x, y);
    for (int i = 0; i < CI * HW; i++) put(o, y[i]);
}

typedef ap_fixed<16, 6, AP_RND, AP_SAT> CV1_IN;
typedef ap_fixed<16, 2, AP_RND, AP_SAT> CV1_WT;
typedef ap_fixed<16, 4, AP_RND, AP_SAT> CV1_BT;
typedef ap_fixed<12, 4, AP_RND, AP_SAT> CV1_OUT;
typedef ap_fixed<37, 13> CV1_ACC;
typedef ap_fixed<16, 6, AP_RND, AP_SAT> CV2_IN;
typedef ap_fixed<16, 2, AP_RND, AP_SAT> CV2_WT;
typedef ap_fixed<16, 2, AP_RND, AP_SAT> CV2_BT;
typedef ap_fixed<16, 6, AP_TRN, AP_SAT> CV2_OUT;
typedef ap_fixed<37, 13> CV2_ACC;
typedef ap_fixed<16, 6, AP_TRN, AP_SAT> CV3_IN;
typedef ap_fixed<12, 1, AP_RND, AP_SAT> CV3_WT;
typedef ap_fixed<12, 9, AP_RND, AP_SAT> CV3_BT;
typedef ap_fixed<10, 6, AP_RND, AP_SAT> CV3_OUT;
typedef ap_fixed<34, 13> CV3_ACC;
typedef ap_ufixed<8, 0, AP_RND, AP_SAT> CV4_IN;
typedef ap_fixed<16, 4, AP_RND, AP_SAT> CV4_WT;
typedef ap_fixed<16, -8, AP_RND, AP_SAT> CV4_BT;
typedef ap_fixed<16, 4, AP_RND, AP_SAT> CV4_OUT;
typedef ap_fixed<33, 9> CV4_ACC;

// args: x[C*H*W], w[O*C*K*K], b[O] -> y[O*HO*WO]
template <int C, int H, int W, int O, int K, int STRIDE, int PAD, int HO, int WO, class IN, class WT, class BT,
          class ACC, class OUT>
void h_conv(const Args &a, Out &o) {
    need(a, C * H * W + O * C * K * K + O);
    IN x[C * H * W];
    int16_t w[O * C * K * K];
    int16_t b[O];
    OUT y[O * HO * WO];
    size_t p = 0;
    for (int i = 0; i < C * H * W; i++) x[i] = hrn::from_raw<IN>(sv(a, p++));
    for (int i = 0; i < O * C * K * K; i++) w[i] = (int16_t)sv(a, p++);
    for (int i = 0; i < O; i++) b[i] = (int16_t)sv(a, p++);
    hrn::conv2d<C, H, W, O, K, STRIDE, PAD, HO, WO, IN, WT, BT, ACC, OUT, int16_t, int16_t>(x, w, b, y);
    for (int i = 0; i < O * HO * WO; i++) put(o, y[i]);
}

// args: x[C*H*W] -> y[C*HO*WO]
template <int C, int H, int W, int K, int STRIDE, int HO, int WO, class T> void h_pool(const Args &a, Out &o) {
    need(a, C * H * W);
    T x[C * H * W];
    T y[C * HO * WO];
    for (int i = 0; i < C * H * W; i++) x[i] = hrn::from_raw<T>(sv(a, i));
    hrn::maxpool<C, H, W, K, STRIDE, HO, WO, T>(x, y);
    for (int i = 0; i < C * HO * WO; i++) put(o, y[i]);
}

// ---- hls4ml heads: leaky_relu, dense -------------------------------------------------------------
typedef ap_ufixed<16, 0> alpha_t;             // render._alpha_t()
static const int ACT_N = 16;
struct act_cfg_16 : nnet::activ_config {
    static const unsigned n_in = ACT_N;
};

// args: alpha (integer, units of 2^-16), x[16] -> y[16]; alpha built from a double as render does
template <class T> void h_leaky(const Args &a, Out &o) {
    need(a, 1 + ACT_N);
    T x[ACT_N], y[ACT_N];
    for (int i = 0; i < ACT_N; i++) x[i] = hrn::from_raw<T>(sv(a, 1 + i));
    double alpha = (double)sv(a, 0) / 65536.0;
    nnet::leaky_relu<T, alpha_t, T, act_cfg_16>(x, alpha_t(alpha), y);
    for (int i = 0; i < ACT_N; i++) put(o, y[i]);
}

typedef ap_fixed<16, 2, AP_RND, AP_SAT> D1_X;
typedef ap_fixed<16, 1, AP_RND, AP_SAT> D1_W;
typedef ap_fixed<16, 4, AP_RND, AP_SAT> D1_B;
typedef ap_fixed<16, 6, AP_RND, AP_SAT> D1_OUT;
typedef ap_fixed<36, 7> D1_ACC;
typedef ap_fixed<8, 4, AP_RND, AP_SAT> D2_X;
typedef ap_fixed<8, 2, AP_RND, AP_SAT> D2_W;
typedef ap_fixed<16, 2, AP_RND, AP_SAT> D2_B;
typedef ap_fixed<10, 3, AP_TRN, AP_SAT> D2_OUT;
typedef ap_fixed<23, 9> D2_ACC;
typedef ap_fixed<16, 6, AP_RND, AP_SAT> D3_X;
typedef ap_fixed<12, -1, AP_RND, AP_SAT> D3_W;
typedef ap_fixed<8, 10, AP_RND, AP_SAT> D3_B;
typedef ap_fixed<8, 6, AP_RND, AP_SAT> D3_OUT;
typedef ap_fixed<35, 12> D3_ACC;

// The config render.head_function writes for a head layer.
template <unsigned NIN, unsigned NOUT, class W, class B, class ACC> struct dense_cfg : nnet::dense_config {
    typedef B bias_t;
    typedef W weight_t;
    typedef ACC accum_t;
    static const unsigned n_in = NIN;
    static const unsigned n_out = NOUT;
    static const unsigned reuse_factor = 1;
    static const unsigned multiplier_limit = NIN * NOUT;
    template <class data_T, class res_T, class CONFIG_T> using kernel = nnet::DenseLatency<data_T, res_T, CONFIG_T>;
    template <class x_T, class y_T> using product = nnet::product::mult<x_T, y_T>;
};

// args: x[NIN] (raw), w[NIN*NOUT] (raw, [n_in][n_out]), b[NOUT] (raw) -> y[NOUT]
template <unsigned NIN, unsigned NOUT, class X, class W, class B, class ACC, class OUT> void h_dense(const Args &a, Out &o) {
    typedef dense_cfg<NIN, NOUT, W, B, ACC> cfg;
    need(a, NIN + NIN * NOUT + NOUT);
    X x[NIN];
    W w[NIN * NOUT];
    B b[NOUT];
    OUT y[NOUT];
    size_t p = 0;
    for (unsigned i = 0; i < NIN; i++) x[i] = hrn::from_raw<X>(sv(a, p++));
    for (unsigned i = 0; i < NIN * NOUT; i++) w[i] = hrn::from_raw<W>(sv(a, p++));
    for (unsigned i = 0; i < NOUT; i++) b[i] = hrn::from_raw<B>(sv(a, p++));
    nnet::dense<X, OUT, cfg>(x, y, w, b);
    for (unsigned i = 0; i < NOUT; i++) put(o, y[i]);
}

// ---- registry -------------------------------------------------------------------------------------
typedef std::function<void(const Args &, Out &)> Handler;

static std::map<std::string, Handler> registry() {
    std::map<std::string, Handler> r;
#define CVT(FN, W, F) r["cvt/" #FN "/" #W "/" #F] = h_convert<FN, W, F>;
#define CVT_ALL(FN) CVT(FN, 40, 20) CVT(FN, 40, 0) CVT(FN, 48, 30) CVT(FN, 24, -3) CVT(FN, 16, 20) CVT(FN, 80, 30)
    CVT_ALL(FA) CVT_ALL(FB) CVT_ALL(FC) CVT_ALL(FD) CVT_ALL(FE) CVT_ALL(FF) CVT_ALL(FG) CVT_ALL(FH) CVT_ALL(FI)
#undef CVT_ALL
#undef CVT
    r["raw/FA"] = h_raw<FA>;
    r["raw/FB"] = h_raw<FB>;
    r["raw/FD"] = h_raw<FD>;
    r["raw/FE"] = h_raw<FE>;
    r["raw/FH"] = h_raw<FH>;
    r["fmix32"] = h_fmix32;
    r["hash/1"] = h_hash<1>;
    r["hash/7"] = h_hash<7>;
    r["hash/16"] = h_hash<16>;
    r["hash/64"] = h_hash<64>;
    r["isqrt/1"] = h_isqrt<1>;
    r["isqrt/7"] = h_isqrt<7>;
    r["isqrt/33"] = h_isqrt<33>;
    r["isqrt/64"] = h_isqrt<64>;
    r["invsqrt/22"] = h_inv_sqrt<22>;
    r["invsqrt/31"] = h_inv_sqrt<31>;
    r["invsqrt/35"] = h_inv_sqrt<35>;
    r["invsqrt/47"] = h_inv_sqrt<47>;
    r["norm/N1"] = h_normalise<16, 47, FA>;    // h s16 frac 14, energies < 2^62
    r["norm/N2"] = h_normalise<8, 35, FB>;     // h s12 frac 13, energies < 2^40
    r["norm/N3"] = h_normalise<16, 22, FC>;    // h s16 frac 10 trn, energies < 2^20
    r["norm/N4"] = h_normalise<1, 31, FA>;     // s = 1: h is +-1 or 0
    r["proj/P1"] = h_project<4, 3, 16, P1_H, P1_B, P1_C, P1_ACC, P1_E>;
    r["proj/P2"] = h_project<5, 2, 8, P2_H, P2_B, P2_C, P2_ACC, P2_E>;
    r["sel/8"] = h_select<8, P1_E>;
    r["res/R1"] = h_residue<3, 16, P1_H, P1_B, P1_C, R1_DIFF, R1_R>;
    r["res/R2"] = h_residue<2, 8, P2_H, P2_B, P2_C, R2_DIFF, R2_R>;
    r["fold/FD1"] = h_fold<5, 2, 6, FJ, FD1_OUT>;
    r["fold/FD2"] = h_fold<3, 2, 4, FD2_IN, FD2_OUT>;
    r["fold/FD3"] = h_fold<7, 3, 2, FB, FD3_OUT>;
    r["fold/FD4"] = h_fold<3, 1, 5, FJ, FD4_OUT>;
    // C, H, W, O, K, STRIDE, PAD, HO, WO (HO = (max(H + 2 PAD, K) - K) / STRIDE + 1)
    r["conv/CV1"] = h_conv<3, 5, 4, 2, 3, 2, 1, 3, 2, CV1_IN, CV1_WT, CV1_BT, CV1_ACC, CV1_OUT>;
    r["conv/CV2"] = h_conv<2, 2, 1, 3, 3, 1, 0, 1, 1, CV2_IN, CV2_WT, CV2_BT, CV2_ACC, CV2_OUT>;
    r["conv/CV3"] = h_conv<1, 1, 1, 2, 5, 1, 1, 1, 1, CV3_IN, CV3_WT, CV3_BT, CV3_ACC, CV3_OUT>;
    r["conv/CV4"] = h_conv<1, 6, 6, 2, 3, 1, 0, 4, 4, CV4_IN, CV4_WT, CV4_BT, CV4_ACC, CV4_OUT>;
    // C, H, W, K, STRIDE, HO, WO (HO = (max(H, K) - K) / STRIDE + 1)
    r["pool/MP1"] = h_pool<2, 5, 4, 2, 2, 2, 2, FJ>;
    r["pool/MP2"] = h_pool<2, 1, 3, 2, 2, 1, 1, FJ>;
    r["pool/MP3"] = h_pool<1, 5, 6, 3, 2, 2, 2, FJ>;
    r["pool/MP4"] = h_pool<1, 2, 2, 3, 1, 1, 1, FJ>;
    r["lrelu/FJ"] = h_leaky<FJ>;
    r["lrelu/FB"] = h_leaky<FB>;
    r["lrelu/FC"] = h_leaky<FC>;
    r["lrelu/FK"] = h_leaky<FK>;
    r["lrelu/FH"] = h_leaky<FH>;
    r["dense/D1"] = h_dense<8, 3, D1_X, D1_W, D1_B, D1_ACC, D1_OUT>;
    r["dense/D2"] = h_dense<5, 4, D2_X, D2_W, D2_B, D2_ACC, D2_OUT>;
    r["dense/D3"] = h_dense<1, 2, D3_X, D3_W, D3_B, D3_ACC, D3_OUT>;
    return r;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s CASES OUT\n", argv[0]);
        return 2;
    }
    const std::map<std::string, Handler> reg = registry();
    std::ifstream in(argv[1]);
    std::ofstream out(argv[2]);
    if (!in || !out) {
        std::fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    std::string line;
    long lineno = 0;
    while (std::getline(in, line)) {
        lineno++;
        if (line.empty()) continue;
        std::istringstream ls(line);
        std::string name, tok;
        ls >> name;
        Args args;
        while (ls >> tok) {
            char *end = nullptr;
            unsigned long long v = tok[0] == '-' ? (unsigned long long)std::strtoll(tok.c_str(), &end, 10)
                                                 : std::strtoull(tok.c_str(), &end, 10);
            if (*end != '\0') {
                std::fprintf(stderr, "line %ld: bad integer %s\n", lineno, tok.c_str());
                return 1;
            }
            args.push_back(v);
        }
        auto it = reg.find(name);
        if (it == reg.end()) {
            std::fprintf(stderr, "line %ld: unknown case %s\n", lineno, name.c_str());
            return 1;
        }
        Out o;
        try {
            it->second(args, o);
        } catch (const std::exception &e) {
            std::fprintf(stderr, "line %ld (%s): %s\n", lineno, name.c_str(), e.what());
            return 1;
        }
        out << name << o.s.str() << '\n';
    }
    return 0;
}
