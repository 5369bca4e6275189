//! Where each PixArt tensor sits in the two layouts: diffusers' `PixArtTransformer2DModel`
//! and the original repository's (`x_embedder`, `t_block`, `blocks.N.attn.qkv` …).

use crate::error::Result;
use crate::layers::Linear;
use crate::weights::Weights;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixArtLayout {
    Diffusers,
    Original,
}

/// The per-block tensors whose names differ only by layout (the attention projections,
/// fused in one layout and not the other, are loaded by [`PixArtLayout::self_qkv`] and
/// [`PixArtLayout::cross_kv`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Part {
    Table,
    SelfOut,
    CrossQuery,
    CrossOut,
    Fc1,
    Fc2,
}

impl PixArtLayout {
    pub const ALL: [PixArtLayout; 2] = [PixArtLayout::Diffusers, PixArtLayout::Original];

    /// The tensor whose presence marks the layout.
    pub(super) fn marker(self) -> &'static str {
        match self {
            PixArtLayout::Diffusers => "adaln_single.linear.weight",
            PixArtLayout::Original => "t_block.1.weight",
        }
    }

    pub(super) fn detect(w: &Weights) -> Option<PixArtLayout> {
        Self::ALL.into_iter().find(|l| w.contains(l.marker()))
    }

    /// The first tensor of PixArt-α's size / aspect-ratio conditioning, if `w` has one.
    pub(super) fn additional_condition_key(self, w: &Weights) -> Option<String> {
        let prefixes: &[&str] = match self {
            PixArtLayout::Diffusers => &[
                "adaln_single.emb.resolution_embedder",
                "adaln_single.emb.aspect_ratio_embedder",
            ],
            PixArtLayout::Original => &["csize_embedder", "ar_embedder"],
        };
        prefixes
            .iter()
            .find_map(|p| w.names_with_prefix(p).into_iter().next())
    }

    /// The patch embedding's convolution weight.
    pub(super) fn patch_proj(self) -> String {
        format!("{}.weight", self.patch_conv())
    }

    pub(super) fn patch_conv(self) -> &'static str {
        match self {
            PixArtLayout::Diffusers => "pos_embed.proj",
            PixArtLayout::Original => "x_embedder.proj",
        }
    }

    /// The timestep MLP's linear `n` (1 or 2).
    pub(super) fn time(self, n: u8) -> String {
        match self {
            PixArtLayout::Diffusers => {
                format!("adaln_single.emb.timestep_embedder.linear_{n}")
            }
            PixArtLayout::Original => format!("t_embedder.mlp.{}", 2 * (n - 1)),
        }
    }

    /// The projection from the embedded timestep to six modulations per block.
    pub(super) fn modulation(self) -> &'static str {
        match self {
            PixArtLayout::Diffusers => "adaln_single.linear",
            PixArtLayout::Original => "t_block.1",
        }
    }

    /// The caption projection's linear `n` (1 or 2).
    pub(super) fn caption(self, n: u8) -> String {
        match self {
            PixArtLayout::Diffusers => format!("caption_projection.linear_{n}"),
            PixArtLayout::Original => format!("y_embedder.y_proj.fc{n}"),
        }
    }

    /// The final layer's `[2, hidden]` shift/scale table.
    pub(super) fn final_table(self) -> &'static str {
        match self {
            PixArtLayout::Diffusers => "scale_shift_table",
            PixArtLayout::Original => "final_layer.scale_shift_table",
        }
    }

    pub(super) fn final_proj(self) -> &'static str {
        match self {
            PixArtLayout::Diffusers => "proj_out",
            PixArtLayout::Original => "final_layer.linear",
        }
    }

    /// Block `i`'s `part` (a module name, or the table's tensor name).
    pub(super) fn block(self, i: i64, part: Part) -> String {
        let (diffusers, original) = match part {
            Part::Table => ("scale_shift_table", "scale_shift_table"),
            Part::SelfOut => ("attn1.to_out.0", "attn.proj"),
            Part::CrossQuery => ("attn2.to_q", "cross_attn.q_linear"),
            Part::CrossOut => ("attn2.to_out.0", "cross_attn.proj"),
            Part::Fc1 => ("ff.net.0.proj", "mlp.fc1"),
            Part::Fc2 => ("ff.net.2", "mlp.fc2"),
        };
        match self {
            PixArtLayout::Diffusers => format!("transformer_blocks.{i}.{diffusers}"),
            PixArtLayout::Original => format!("blocks.{i}.{original}"),
        }
    }

    /// Block `i`'s self-attention query, key and value as one `[3·hidden, hidden]`
    /// projection: stored so in the original layout, fused at load from diffusers'.
    pub(super) fn self_qkv(self, w: &Weights, i: i64, hidden: i64) -> Result<Linear> {
        match self {
            PixArtLayout::Original => {
                Linear::load(w, &format!("blocks.{i}.attn.qkv"), hidden, 3 * hidden)
            }
            PixArtLayout::Diffusers => fused(
                w,
                &format!("transformer_blocks.{i}.attn1"),
                &["to_q", "to_k", "to_v"],
                hidden,
            ),
        }
    }

    /// Block `i`'s cross-attention key and value as one `[2·hidden, hidden]` projection.
    pub(super) fn cross_kv(self, w: &Weights, i: i64, hidden: i64) -> Result<Linear> {
        match self {
            PixArtLayout::Original => Linear::load(
                w,
                &format!("blocks.{i}.cross_attn.kv_linear"),
                hidden,
                2 * hidden,
            ),
            PixArtLayout::Diffusers => fused(
                w,
                &format!("transformer_blocks.{i}.attn2"),
                &["to_k", "to_v"],
                hidden,
            ),
        }
    }
}

fn fused(w: &Weights, module: &str, parts: &[&str], hidden: i64) -> Result<Linear> {
    let loaded = parts
        .iter()
        .map(|p| Linear::load(w, &format!("{module}.{p}"), hidden, hidden))
        .collect::<Result<Vec<_>>>()?;
    Ok(Linear::fused(loaded))
}
