// kiln-opt, the driver: pass listing, mixed pipelines, named pipelines, and clear errors.

// RUN: kiln-opt --list-passes | filecheck %s --check-prefix=LIST
// Every registered pass appears between the two headings, with its summary and option defaults
// (order-free, so registering another pass does not break this check).
// LIST:      Kiln passes:
// LIST-DAG:    convert-kiln-to-torch {{.*}} [target=cpu, attention=auto]
// LIST-DAG:    kiln-drop-identities {{.+}}
// LIST-DAG:    kiln-raise-attention {{.+}}
// LIST-DAG:    kiln-raise-linear {{.+}}
// LIST:      Kiln pipelines:
// LIST-DAG:    kiln-raise-pipeline {{.+}}
// LIST-DAG:    kiln-lower-pipeline {{.+}}
// LIST:      Any upstream MLIR or torch-mlir pass

// Kiln passes (one with an option) and an upstream pass mixed in one pipeline: the attention chain
// is raised, canonicalize drops the constants left dead (the old divisor 4.0), and the cuda
// lowering (decomposed) brings it back as torch ops with the scale folded to 0.25.
// RUN: kiln-opt %s -p 'kiln-raise-attention,canonicalize,convert-kiln-to-torch{target=cuda}' | filecheck %s --check-prefix=PIPE
// PIPE-LABEL: func.func @attention(
// PIPE-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// PIPE-NOT:     kiln.
// PIPE-NOT:     torch.constant.float 4.000000e+00
// PIPE-NOT:     torch.aten.div.Scalar
// PIPE:         %[[KT:.+]] = torch.aten.transpose.int %[[K]],
// PIPE:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]] :
// PIPE:         %[[SCALE:.+]] = torch.constant.float 2.500000e-01
// PIPE:         %[[SS:.+]] = torch.aten.mul.Scalar %[[S]], %[[SCALE]] :
// PIPE:         %[[P:.+]] = torch.aten._softmax %[[SS]],
// PIPE:         %[[O:.+]] = torch.aten.matmul %[[P]], %[[V]] :
// PIPE-NOT:     kiln.
// PIPE:         return %[[O]]

// Named pipelines, with an option whose value holds a comma, inside builtin.module(...).
// RUN: kiln-opt %s -p 'builtin.module(kiln-raise-pipeline,kiln-lower-pipeline{target=cpu,cuda})' | filecheck %s --check-prefix=NAMED
// NAMED-LABEL: func.func @attention(
// NAMED-NOT:     kiln.
// NAMED:         torch.aten._softmax
// NAMED-NOT:     kiln.
// NAMED:         return

// An unknown kiln pass name is a one-line error that says where to look, not a traceback.
// RUN: not kiln-opt %s -p 'kiln-raise-attention,kiln-raise-atention' 2>&1 | filecheck %s --check-prefix=ERR
// ERR-NOT: Traceback
// ERR:     error: unknown kiln pass 'kiln-raise-atention'; run kiln-opt --list-passes
// ERR-NOT: Traceback

// An option a pass does not have is rejected with the options it does have.
// RUN: not kiln-opt %s -p 'convert-kiln-to-torch{targte=cuda}' 2>&1 | filecheck %s --check-prefix=OPT
// OPT-NOT: Traceback
// OPT:     error: pass 'convert-kiln-to-torch' has no option 'targte'; options: target, attention

// An unknown target fails when the pass runs, with a reproducer command.
// RUN: not kiln-opt %s -p 'convert-kiln-to-torch{target=tpu}' 2>&1 | filecheck %s --check-prefix=TARGET
// TARGET-NOT: Traceback
// TARGET:     error: {{.*}}unknown target 'tpu' for convert-kiln-to-torch; use cpu, cuda or cpu,cuda
// TARGET:     reproduce with:
// TARGET-NEXT:  kiln-opt {{.+}}.mlir -p 'convert-kiln-to-torch{target=tpu attention=auto}'

func.func @attention(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f4 = torch.constant.float 4.000000e+00
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %f4 : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %d, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}
