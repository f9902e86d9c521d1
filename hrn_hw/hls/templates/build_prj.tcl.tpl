# Vitis HLS project for the generated HRN dataflow: vitis_hls -f build_prj.tcl
# (C simulation, synthesis and, with CSIM_ONLY unset, export as an IP).
open_project -reset hrn_prj
set_top hrn_top
add_files firmware/hrn_top.cpp -cflags "-std=c++14 -Ifirmware -Ifirmware/nnet_utils"
add_files -tb csim_main.cpp -cflags "-std=c++14 -Ifirmware -Ifirmware/nnet_utils"
open_solution -reset "solution1" -flow_target vivado
set_part {xc7z020clg400-1}
create_clock -period 5 -name default
csim_design -argv "golden_inputs.bin csim_outputs.bin"
csynth_design
export_design -format ip_catalog
exit
