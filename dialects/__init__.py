"""The `kiln` MLIR dialect (Python-defined over IRDL; see `kiln.dialects.kiln`)."""

from kiln.dialects.kiln import (  # noqa: F401
    ACTIVATIONS,
    AddLayerNormOp,
    AddRmsNormOp,
    GATED_ACTIVATIONS,
    WEIGHT_LAYOUTS,
    attention_type_problem,
    AttentionOp,
    KilnDialect,
    LayerNormOp,
    LinearOp,
    RopeOp,
    RmsNormOp,
    bool_attr,
    generate_irdl,
    load_kiln_dialect,
    make_context,
)
