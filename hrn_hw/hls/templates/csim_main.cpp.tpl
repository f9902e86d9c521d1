// C-simulation driver: reads golden inputs, runs hrn_top, writes raw outputs.
//   input file:  int32 N, int32 IN_N, then per sample int32 task and IN_N uint8 pixels
//   output file: per sample S int32 embedding (raw), D int32 route, MAX_CLASSES int32 logits (raw)
#include <cstdint>
#include <cstdio>
#include <vector>

#include "firmware/hrn_fixed.h"
#include "firmware/hrn_top.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s INPUTS.bin OUTPUTS.bin\n", argv[0]);
        return 2;
    }
    FILE *fin = std::fopen(argv[1], "rb");
    if (!fin) { std::fprintf(stderr, "cannot open %s\n", argv[1]); return 2; }
    int32_t n = 0, in_n = 0;
    if (std::fread(&n, 4, 1, fin) != 1 || std::fread(&in_n, 4, 1, fin) != 1 || in_n != IN_N || n < 0) {
        std::fprintf(stderr, "%s: bad header (expected %d pixels per sample)\n", argv[1], IN_N);
        return 2;
    }
    FILE *fout = std::fopen(argv[2], "wb");
    if (!fout) { std::fprintf(stderr, "cannot open %s\n", argv[2]); return 2; }
    std::vector<uint8_t> buf(IN_N);
    std::vector<int32_t> rec(S + D + MAX_CLASSES);
    for (int32_t i = 0; i < n; i++) {
        int32_t task = 0;
        if (std::fread(&task, 4, 1, fin) != 1 || std::fread(buf.data(), 1, IN_N, fin) != (size_t)IN_N) {
            std::fprintf(stderr, "%s: truncated at sample %d\n", argv[1], i);
            return 2;
        }
        input_t pixels[IN_N];
        for (int j = 0; j < IN_N; j++) pixels[j].range(7, 0) = buf[j];
        emb_t emb[S];
        route_t route[D];
        logit_raw_t logits[MAX_CLASSES];
        hrn_top(pixels, task, emb, route, logits);
        for (int j = 0; j < S; j++) rec[j] = hrn::to_raw<ap_int<32> >(emb[j]).to_int();
        for (int k = 0; k < D; k++) rec[S + k] = route[k].to_int();
        for (int c = 0; c < MAX_CLASSES; c++) rec[S + D + c] = logits[c].to_int();
        std::fwrite(rec.data(), 4, rec.size(), fout);
    }
    std::fclose(fout);
    std::fclose(fin);
    return 0;
}
