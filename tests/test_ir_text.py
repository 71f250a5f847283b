"""kiln.ir_text: the one splitter of pipeline and function-header text, and MLIR strings."""

from kiln.ir_text import TYPE_BRACKETS, mlir_string, mlir_unescape, split_top_level


def test_split_pipeline_text():
    assert split_top_level("a{x=1,y=2}, b(c, d), canonicalize,") == \
        ["a{x=1,y=2}", "b(c, d)", "canonicalize"]


def test_split_function_arguments_keeps_types_whole():
    header = "%arg0: !torch.vtensor<[2,4],f32>, %arg1: tensor<2x4xf32>"
    assert split_top_level(header, TYPE_BRACKETS) == \
        ["%arg0: !torch.vtensor<[2,4],f32>", "%arg1: tensor<2x4xf32>"]
    assert len(split_top_level(header)) == 3, "pipeline brackets do not know <>"


def test_mlir_string_round_trips():
    text = 'a "quoted" \\ back\nslash\ttab é'
    literal = mlir_string(text)
    assert literal.startswith('"') and "\n" not in literal
    assert mlir_unescape(literal[1:-1]) == text
