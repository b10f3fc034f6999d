// The plugin SDK's ABI version: one integer for the binary interface between liblab (and labrun)
// and a compiled plugin, i.e. everything a plugin compiles from the installed lab/*.h headers
// (class layouts, virtual function order, inline code, function signatures). A plugin exports the
// number it was compiled with inside its ABI tag (lab/version.h); labrun loads only a plugin whose
// number, compiler major version and libstdc++ string ABI all equal its own.
//
// This is not the project's version: the project can release without an ABI change, and a change
// to an installed header is an ABI change whatever the release. tests register "scripts: sdk_abi",
// which hashes the installed headers (comments and layout left out) and fails when they changed
// without a bump; framework/sdk_abi.lock records the hash of every number. To bump: increase
// LAB_SDK_ABI below by one, run `tools/sdk_abi.py --build <build> --update`, and say in the commit
// what changed in the headers (docs/writing-a-plugin.md, "What the SDK ABI version promises").
//
// History: 1 is the first numbered ABI (before it, the tag held the project version, 0.2.0, which
// stayed the same while the headers changed). 2: Backend::native_bf16_matmul public,
// Tensor::is_dense and to_like. 3: Backend::prefers_fused_attention, AttentionKernelArgs::saved, and the
// attention variants' fused option (attention::FusedChoice, declare_fused_option, fused_choice,
// run_fused, core_floats_per_token). 4: Backend::unary_bf16 (and HostBackend's override),
// ops::gelu_matmul_input, checks::require_output_rows (attention_backward's dq, dk and dv may be
// laid out as any dense rows, as the fused op now allocates them), HostBackend::multiply_on_amx.
// 5: Backend::unary_backward_bf16, layer_norm_bf16 and layer_norm_backward_accumulate (and
// HostBackend's overrides), ops::linear_gelu_matmul_input and layer_norm_matmul_input,
// LayerNorm::forward_matmul_input, Node::accumulate_into (record's last argument),
// Tensor::is_sole_reference, Backend::matmul_add (HostBackend::multiply_on_amx's addend),
// ops::linear_residual and linear_dropout_residual, MultiHeadAttention::forward_residual.
#pragma once

#define LAB_SDK_ABI 5
