# g++ C simulation of the generated HLS project (no Vitis needed).
CXX ?= g++
CXXFLAGS ?= -O2 -std=c++17 -w
SRC = csim_main.cpp firmware/hrn_top.cpp
HDR = $$(wildcard firmware/*.h)

csim: build/csim
build/csim: $$(SRC) $$(HDR)
	mkdir -p build
	$$(CXX) $$(CXXFLAGS) -Ifirmware -Ifirmware/ap_types -Ifirmware/nnet_utils $$(SRC) -o $$@.tmp && mv $$@.tmp $$@

clean:
	rm -rf build
.PHONY: csim clean
