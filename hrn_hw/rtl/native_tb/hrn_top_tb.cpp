// Native Verilator testbench of the top level (hrn_hw/rtl/top.py, module hrn_top): the C++
// twin of sim/test_top.py, run by hrn_hw/rtl/native_sim.py (`hrn-hw verify --against rtl`).
//
//   Vhrn_top cases.bin outputs.bin        (working directory: where the .hex memory files are)
//
// Timing follows sim/simlib.py stream_frame / sim/test_top.py run_sample exactly: reset held
// over three rising edges, released on a falling edge; then per sample, on every falling edge,
// read the outputs (they depend on registers only), drive task (the sample's id with the first
// pixel, another id afterwards), emb_ready, in_valid / in_data and out_ready, count the
// handshakes; after the last logit one more falling edge reads `route` and drops in_valid and
// out_ready. Cycles: first pixel handshake to last logit handshake, both included. Stalled
// samples get pseudo-random input gaps (30 %) and embedding / logit stalls (40 %).
//
// Stream mode (header `stream`, the pipelined top level, hrn_hw/rtl/pipelined.py): every sample
// of the file back to back after one reset (in_valid high from the first pixel of sample 0 to
// the last of the last sample unless stalled), task the sample's id on its beats and another
// id when no beat is offered; the top's outputs leave tagged with the sample's index mod 2^16
// (emb_id, out_id; route valid with out_valid) and are collected by tag, out of input order.
// The samples' stalled flags apply to the whole stream (all set or all clear).
//
// cases.bin (little-endian): "HRNTBIN1", int64 header[16] (see Header), then per sample
// int64 task, int64 stalled, uint8 pixels[n_pixels].
// outputs.bin: "HRNTBOUT", int64 n, double seconds (of the unstalled samples), then per sample
// int64 cycles, emb_count, flags, start, end, route[d], emb[s], logits[classes]; start and end:
// the sample's first pixel handshake and last logit handshake, in cycles from sample 0's first
// pixel handshake.
// Port widths come from the Verilated model's own types (any width, VlWide above 64 bits); the
// word layout (words per beat, word widths, signedness) from the header.

#include "Vhrn_top.h"
#include "verilated.h"

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

double sc_time_stamp() { return 0; }

namespace {

struct Header {
    int64_t n_samples, n_pixels, words, s, emb_width, emb_signed, classes, d, route_width, tasks,
        max_cycles, seed, in_gap_permille, out_stall_permille, out_width, stream;
};

enum Flags : int64_t { EMB_PADDING = 1 };
constexpr int64_t TAGS = 65536;    // emb_id / out_id: the sample's index mod 2^16

// Whether the Verilated top level has the pipelined top's tag ports.
template <typename T, typename = void>
struct HasIds : std::false_type {};
template <typename T>
struct HasIds<T, std::void_t<decltype(std::declval<T&>().emb_id), decltype(std::declval<T&>().out_id)>>
    : std::true_type {};

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "hrn_top_tb: %s\n", msg.c_str());
    std::exit(2);
}

// Bits of a port as 32-bit words (little end first), for any Verilated port type.
template <typename T>
void get_bits(const T& v, std::vector<uint32_t>& out) {
    if constexpr (std::is_integral<T>::value) {
        uint64_t x = static_cast<uint64_t>(v);
        out.assign({static_cast<uint32_t>(x), static_cast<uint32_t>(x >> 32)});
    } else {
        out.resize(T::Words);
        for (std::size_t i = 0; i < T::Words; ++i) out[i] = v[i];
    }
}

template <typename T>
void set_bits(T& v, const std::vector<uint32_t>& in) {
    if constexpr (std::is_integral<T>::value) {
        uint64_t x = in.empty() ? 0 : in[0];
        if (in.size() > 1) x |= static_cast<uint64_t>(in[1]) << 32;
        v = static_cast<T>(x);
    } else {
        for (std::size_t i = 0; i < T::Words; ++i) v[i] = i < in.size() ? in[i] : 0;
    }
}

// Field k (width w) of a bit vector, sign-extended when `is_signed`.
int64_t field(const std::vector<uint32_t>& bits, int64_t k, int64_t w, bool is_signed) {
    uint64_t x = 0;
    for (int64_t b = 0; b < w; ++b) {
        int64_t pos = k * w + b;
        std::size_t word = static_cast<std::size_t>(pos >> 5);
        if (word < bits.size() && ((bits[word] >> (pos & 31)) & 1u)) x |= uint64_t(1) << b;
    }
    if (is_signed && w < 64 && ((x >> (w - 1)) & 1u)) return static_cast<int64_t>(x) - (int64_t(1) << w);
    return static_cast<int64_t>(x);
}

// Deterministic pseudo-random numbers (splitmix64) for the stalls.
struct Rng {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    bool below(int64_t permille) { return permille > 0 && static_cast<int64_t>(next() % 1000) < permille; }
};

struct Bench {
    Header h;
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vhrn_top> top;
    std::vector<uint32_t> bits;      // scratch: one port's bits
    int64_t clock = 0;               // rising edges so far: the cycle of the coming falling edge

    void tick() {          // from a falling edge (inputs just driven) through the next rising edge
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
        ++clock;
    }

    void reset() {
        top->clk = 0;
        top->rst = 1;
        top->eval();
        for (int k = 0; k < 3; ++k) tick();
        top->rst = 0;     // released on a falling edge
        tick();
    }

    void set_beat(const uint8_t* px, int64_t beat) {
        bits.assign(static_cast<std::size_t>((8 * h.words + 31) / 32 + 1), 0u);
        for (int64_t w = 0; w < h.words; ++w) {
            int64_t p = beat * h.words + w;
            uint32_t v = p < h.n_pixels ? px[p] : 0u;
            bits[static_cast<std::size_t>((8 * w) >> 5)] |= v << ((8 * w) & 31);
        }
        set_bits(top->in_data, bits);
    }

    void clear_beat() {
        bits.assign(2 + 8 * static_cast<std::size_t>(h.words) / 32, 0u);
        set_bits(top->in_data, bits);
    }

    // One sample; `rec` gets cycles, emb_count, flags, start, end (absolute cycles: `main` makes
    // them relative), route[d], emb[s], logits[classes].
    void run(const uint8_t* px, int64_t task, bool stalled, Rng& rng, int64_t index, int64_t* rec) {
        const int64_t n = (h.n_pixels + h.words - 1) / h.words;
        const int64_t emb_beats = (h.s + h.words - 1) / h.words;
        const int64_t gap = stalled ? h.in_gap_permille : 0, stall = stalled ? h.out_stall_permille : 0;
        std::vector<int64_t> emb, out;
        int64_t i = 0, cyc = -1, first = -1, last = -1, flags = 0;
        while (static_cast<int64_t>(out.size()) < h.classes) {
            ++cyc;        // a falling edge: outputs as the last rising edge left them
            const bool in_ready = top->in_ready, out_valid = top->out_valid, emb_valid = top->emb_valid;
            top->task = static_cast<std::remove_reference_t<decltype(top->task)>>(i == 0 ? task : (task + 1) % h.tasks);
            const bool emb_ready = !rng.below(stall);
            top->emb_ready = emb_ready;
            if (emb_ready && emb_valid) {
                get_bits(top->emb_data, bits);
                for (int64_t w = 0; w < h.words; ++w) emb.push_back(field(bits, w, h.emb_width, h.emb_signed));
                if (bool(top->emb_last) != (static_cast<int64_t>(emb.size()) == emb_beats * h.words))
                    die("sample " + std::to_string(index) + ": emb_last misplaced");
            }
            const bool send = i < n && !rng.below(gap);
            const bool ready = !rng.below(stall);
            top->in_valid = send;
            if (send) set_beat(px, i); else clear_beat();
            top->out_ready = ready;
            if (send && in_ready) {
                if (first < 0) first = clock;
                ++i;
            }
            if (out_valid && ready) {
                get_bits(top->out_data, bits);
                out.push_back(field(bits, 0, h.out_width, true));
                if (bool(top->out_last) != (static_cast<int64_t>(out.size()) == h.classes))
                    die("sample " + std::to_string(index) + ": out_last misplaced");
                last = clock;
            }
            if (cyc >= h.max_cycles)
                die("sample " + std::to_string(index) + ": frame does not finish within " +
                    std::to_string(h.max_cycles) + " cycles");
            tick();
        }
        // the falling edge after the last logit: read the route, drop in_valid and out_ready
        std::vector<uint32_t> route;
        get_bits(top->route, route);
        top->in_valid = 0;
        clear_beat();
        top->out_ready = 0;
        tick();
        if (i != n) die("sample " + std::to_string(index) + ": frame ended before every pixel was taken");
        for (std::size_t k = static_cast<std::size_t>(h.s); k < emb.size(); ++k)
            if (emb[k] != 0) flags |= EMB_PADDING;
        rec[0] = last - first + 1;
        rec[1] = static_cast<int64_t>(emb.size());
        rec[2] = flags;
        rec[3] = first;
        rec[4] = last;
        int64_t* p = rec + 5;
        for (int64_t k = 0; k < h.d; ++k) *p++ = field(route, k, h.route_width, true);
        for (int64_t k = 0; k < h.s; ++k)
            *p++ = k < static_cast<int64_t>(emb.size()) ? emb[static_cast<std::size_t>(k)] : INT64_MIN;
        for (int64_t k = 0; k < h.classes; ++k) *p++ = out[static_cast<std::size_t>(k)];
    }

    // The frames of one tagged output port (emb_id / out_id) in stream mode: which sample each
    // frame belongs to, which are done and in which order they left.
    struct Frames {
        const char* port;                   // the id port, for messages
        const char* frame;                  // what one frame is, for messages
        std::vector<uint8_t> done;
        std::vector<int64_t> rank;          // the order the frames left in
        int64_t lo = 0;                     // the lowest sample whose frame is not done
        int64_t k = -1, n = 0;              // the frame in progress: its sample (-1: none), words taken
        int64_t frames = 0;                 // frames done

        Frames(const char* port_, const char* frame_, int64_t count)
            : port(port_), frame(frame_), done(static_cast<std::size_t>(count)), rank(static_cast<std::size_t>(count)) {}

        // The sample a beat with `tag` belongs to: the frame in progress, or (none in progress) the
        // lowest sample from `lo` on, among the `started`, whose frame is not done.
        int64_t owner(int64_t tag, int64_t started) {
            if (k >= 0) {
                if (tag != k % TAGS)
                    die("sample " + std::to_string(k) + ": " + port + " changed to " + std::to_string(tag) +
                        " within its " + frame);
                return k;
            }
            k = lo + static_cast<int64_t>(static_cast<uint64_t>(tag - lo) % TAGS);
            while (k < started && done[static_cast<std::size_t>(k)]) k += TAGS;
            if (k >= started)
                die(std::string(port) + " " + std::to_string(tag) + ": no started sample with that tag is waiting " +
                    "for a frame (" + std::to_string(started) + " started; a second frame?)");
            n = 0;
            return k;
        }

        // The frame in progress is complete.
        void finish() {
            done[static_cast<std::size_t>(k)] = 1;
            rank[static_cast<std::size_t>(k)] = frames++;
            while (lo < static_cast<int64_t>(done.size()) && done[static_cast<std::size_t>(lo)]) ++lo;
            k = -1;
        }
    };

    // Stream mode: all `h.n_samples` samples (rows of `cases`, `stride` bytes apart) as one stream;
    // rows of `recs` as `run`'s, in sample order. Compiled for a top level with emb_id / out_id.
    template <typename M>
    void run_stream(M& m, const char* cases, std::size_t stride, bool stalled, Rng& rng, int64_t* recs,
                    std::size_t rec_len) {
        if constexpr (!HasIds<M>::value) {
            die("stream mode: the top level has no emb_id / out_id ports (not the pipelined top level)");
        } else {
            using Task = std::remove_reference_t<decltype(m.task)>;
            const int64_t count = h.n_samples, n = (h.n_pixels + h.words - 1) / h.words;
            const int64_t emb_words = (h.s + h.words - 1) / h.words * h.words;
            const int64_t gap = stalled ? h.in_gap_permille : 0, stall = stalled ? h.out_stall_permille : 0;
            auto row = [&](int64_t k) { return cases + stride * static_cast<std::size_t>(k); };
            auto rec = [&](int64_t k) { return recs + rec_len * static_cast<std::size_t>(k); };
            auto name = [](int64_t k) { return "sample " + std::to_string(k); };
            Frames emb("emb_id", "embedding frame", count), out("out_id", "logits", count);
            int64_t cur = 0, i = 0;                 // the sample and beat offered
            const int64_t t0 = clock;
            while (emb.frames < count || out.frames < count) {
                if (clock - t0 >= h.max_cycles)
                    die("stream of " + std::to_string(count) + " samples does not finish within " +
                        std::to_string(h.max_cycles) + " cycles (" + std::to_string(cur) + " samples taken, " +
                        std::to_string(emb.frames) + " embedding frames and " + std::to_string(out.frames) +
                        " logit frames out)");
                // a falling edge: outputs as the last rising edge left them
                const bool in_ready = m.in_ready, out_valid = m.out_valid, emb_valid = m.emb_valid;
                const int64_t started = cur + (i > 0);
                const bool emb_ready = !rng.below(stall);
                m.emb_ready = emb_ready;
                if (emb_ready && emb_valid) {
                    const int64_t k = emb.owner(m.emb_id, started);
                    int64_t* r = rec(k);
                    get_bits(m.emb_data, bits);
                    for (int64_t w = 0; w < h.words; ++w, ++emb.n) {
                        const int64_t v = field(bits, w, h.emb_width, h.emb_signed);
                        if (emb.n < h.s) r[5 + h.d + emb.n] = v;
                        else if (v != 0) r[2] |= EMB_PADDING;
                    }
                    if (bool(m.emb_last) != (emb.n == emb_words)) die(name(k) + ": emb_last misplaced");
                    if (emb.n == emb_words) {
                        r[1] = emb.n;
                        emb.finish();
                    }
                }
                const bool send = cur < count && !rng.below(gap);
                const bool ready = !rng.below(stall);
                int64_t task;
                std::memcpy(&task, row(cur < count ? cur : count - 1), 8);
                m.task = static_cast<Task>(send ? task : (task + 1) % h.tasks);
                m.in_valid = send;
                if (send) set_beat(reinterpret_cast<const uint8_t*>(row(cur) + 16), i); else clear_beat();
                m.out_ready = ready;
                if (send && in_ready) {
                    if (i == 0) rec(cur)[3] = clock;
                    if (++i == n) ++cur, i = 0;
                }
                if (out_valid && ready) {
                    const int64_t k = out.owner(m.out_id, started);
                    int64_t* r = rec(k);
                    get_bits(m.route, bits);
                    for (int64_t step = 0; step < h.d; ++step) {
                        const int64_t v = field(bits, step, h.route_width, true);
                        if (out.n > 0 && r[5 + step] != v) die(name(k) + ": route changed within its logits");
                        r[5 + step] = v;
                    }
                    get_bits(m.out_data, bits);
                    r[5 + h.d + h.s + out.n++] = field(bits, 0, h.out_width, true);
                    if (bool(m.out_last) != (out.n == h.classes)) die(name(k) + ": out_last misplaced");
                    if (out.n == h.classes) {
                        r[4] = clock;
                        out.finish();
                    }
                }
                tick();
            }
            // one more falling edge: drop in_valid and out_ready
            m.in_valid = 0;
            clear_beat();
            m.out_ready = 0;
            tick();
            if (cur != count) die("stream ended before every pixel was taken (" + std::to_string(cur) + " samples)");
            for (int64_t k = 0; k < count; ++k) {
                const std::size_t j = static_cast<std::size_t>(k);
                if (emb.rank[j] != out.rank[j])
                    die(name(k) + ": embedding frame " + std::to_string(emb.rank[j]) + " but logit frame " +
                        std::to_string(out.rank[j]) + " (the two leave in different orders)");
                rec(k)[0] = rec(k)[4] - rec(k)[3] + 1;
            }
        }
    }
};

std::vector<char> read_file(const char* path) {
    FILE* f = std::fopen(path, "rb");
    if (!f) die(std::string("cannot open ") + path);
    std::vector<char> data;
    char buf[1 << 16];
    std::size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + got);
    std::fclose(f);
    return data;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) die("usage: Vhrn_top cases.bin outputs.bin");
    std::vector<char> in = read_file(argv[1]);
    if (in.size() < 8 + sizeof(Header) || std::memcmp(in.data(), "HRNTBIN1", 8) != 0) die("bad cases file");
    Bench b;
    std::memcpy(&b.h, in.data() + 8, sizeof(Header));
    const Header& h = b.h;
    const std::size_t stride = 16 + static_cast<std::size_t>(h.n_pixels);
    if (in.size() != 8 + sizeof(Header) + stride * static_cast<std::size_t>(h.n_samples)) die("truncated cases file");
    const std::size_t rec_len = 5 + static_cast<std::size_t>(h.d + h.s + h.classes);
    std::vector<int64_t> recs(rec_len * static_cast<std::size_t>(h.n_samples));
    const char* rows = in.data() + 8 + sizeof(Header);
    int64_t stalled_rows = 0;
    for (int64_t n = 0; n < h.n_samples; ++n) {
        int64_t stalled;
        std::memcpy(&stalled, rows + stride * static_cast<std::size_t>(n) + 8, 8);
        stalled_rows += stalled != 0;
    }
    if (h.stream && stalled_rows != 0 && stalled_rows != h.n_samples)
        die("stream mode: stalled and unstalled samples in one stream (a stream is stalled as a whole)");

    b.ctx = std::make_unique<VerilatedContext>();
    const char* vargs[] = {"Vhrn_top"};
    b.ctx->commandArgs(1, vargs);
    b.top = std::make_unique<Vhrn_top>(b.ctx.get(), "hrn_top");
    b.reset();
    Rng rng{static_cast<uint64_t>(h.seed)};
    double seconds = 0;
    if (h.stream && h.n_samples > 0) {
        auto t0 = std::chrono::steady_clock::now();
        b.run_stream(*b.top, rows, stride, stalled_rows != 0, rng, recs.data(), rec_len);
        if (!stalled_rows) seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    for (int64_t n = 0; !h.stream && n < h.n_samples; ++n) {
        const char* rec = rows + stride * static_cast<std::size_t>(n);
        int64_t task, stalled;
        std::memcpy(&task, rec, 8);
        std::memcpy(&stalled, rec + 8, 8);
        auto t0 = std::chrono::steady_clock::now();
        b.run(reinterpret_cast<const uint8_t*>(rec + 16), task, stalled != 0, rng, n,
              recs.data() + rec_len * static_cast<std::size_t>(n));
        if (!stalled) seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    b.top->final();
    const int64_t origin = h.n_samples > 0 ? recs[3] : 0;    // start, end: from sample 0's first pixel
    for (int64_t n = 0; n < h.n_samples; ++n) {
        int64_t* rec = recs.data() + rec_len * static_cast<std::size_t>(n);
        rec[3] -= origin;
        rec[4] -= origin;
    }

    FILE* f = std::fopen(argv[2], "wb");
    if (!f) die(std::string("cannot write ") + argv[2]);
    const int64_t count = h.n_samples;
    bool ok = std::fwrite("HRNTBOUT", 1, 8, f) == 8 && std::fwrite(&count, 8, 1, f) == 1 &&
              std::fwrite(&seconds, 8, 1, f) == 1 &&
              std::fwrite(recs.data(), 8, recs.size(), f) == recs.size();
    if (std::fclose(f) != 0 || !ok) die(std::string("cannot write ") + argv[2]);
    return 0;
}
