"""Reference runs of every sampler on an analytic denoiser, for tests/sampler_parity.rs.

The k-diffusion samplers come from k-diffusion 0.1.1 itself. ddim (= ComfyUI's Euler on
the same sigmas), lcm and uni_pc are not in k-diffusion: they are written here from the
published algorithms (LCM: Luo et al. 2023; UniPC-bh1: Zhao et al. 2023, run as ComfyUI
does in variance-preserving coordinates over sigmas with the final 0 replaced by 0.001).
Noise is pre-drawn and replayed in order, so the Rust side can consume the same draws.
Writes <out>/samplers.safetensors: x0, sigmas_<sched>, noise_<i>, and out_<sampler>_<sched>
plus the number of noise draws each sampler made (draws_<sampler>_<sched>).
"""
import argparse, importlib.util, math, os, sys, types
import torch
from safetensors.torch import save_file

spec = importlib.util.find_spec("k_diffusion")
pkg = types.ModuleType("k_diffusion")
pkg.__path__ = list(spec.submodule_search_locations)
sys.modules["k_diffusion"] = pkg
import k_diffusion.sampling as K  # noqa: E402

torch.set_default_dtype(torch.float64)


def denoiser(x, sigma):
    """Nonlinear in x and sigma; implemented identically in the Rust test."""
    s = float(sigma)
    return x * (0.8 / (1.0 + 0.1 * s)) + torch.tanh(x) * (0.3 / (1.0 + s))


class Model:
    def __call__(self, x, sigma, **kw):
        return denoiser(x, sigma.flatten()[0])


class Replay:
    def __init__(self, noise):
        self.noise, self.used = noise, 0

    def __call__(self, sigma, sigma_next):
        t = self.noise[self.used]
        self.used += 1
        return t


def lcm(x, sigmas, ns):
    for i in range(len(sigmas) - 1):
        x = denoiser(x, sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + ns(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
    return x


def unipc_bh1(x_ve, sigmas):
    ts = [float(s) for s in sigmas]
    if ts[-1] == 0:
        ts[-1] = 0.001
    log_mean = lambda s: 0.5 * math.log(1.0 / (s * s + 1.0))
    alpha = lambda s: math.exp(log_mean(s))
    std = lambda s: math.sqrt(1.0 - math.exp(2.0 * log_mean(s)))
    lam = lambda s: log_mean(s) - 0.5 * math.log(1.0 - math.exp(2.0 * log_mean(s)))

    def eps(x_vp, s):
        x_in = x_vp * math.sqrt(s * s + 1.0)
        return (x_in - denoiser(x_in, s)) / s

    def x0(x_vp, s):
        return (x_vp - std(s) * eps(x_vp, s)) / alpha(s)

    def update(x, models, times, t, order, corrector):
        t0, m0 = times[-1], models[-1]
        h = lam(t) - lam(t0)
        rks, d1s = [], []
        for i in range(1, order):
            rk = (lam(times[-(i + 1)]) - lam(t0)) / h
            rks.append(rk)
            d1s.append((models[-(i + 1)] - m0) / rk)
        rks.append(1.0)
        rks = torch.tensor(rks)
        hh = -h
        h_phi_1 = math.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        fact, B_h, R, b = 1, hh, [], []
        for i in range(1, order + 1):
            R.append(rks ** (i - 1))
            b.append(h_phi_k * fact / B_h)
            fact *= i + 1
            h_phi_k = h_phi_k / hh - 1 / fact
        R, b = torch.stack(R), torch.tensor(b)
        x_t_ = std(t) / std(t0) * x - alpha(t) * h_phi_1 * m0
        x_t = x_t_
        if d1s:
            rhos_p = torch.tensor([0.5]) if order == 2 else torch.linalg.solve(R[:-1, :-1], b[:-1])
            x_t = x_t_ - alpha(t) * B_h * sum(r * d for r, d in zip(rhos_p, d1s))
        if not corrector:
            return x_t, None
        rhos_c = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(R, b)
        m_t = x0(x_t, t)
        corr = sum(r * d for r, d in zip(rhos_c[:-1], d1s)) if d1s else 0
        return x_t_ - alpha(t) * B_h * (corr + rhos_c[-1] * (m_t - m0)), m_t

    x = x_ve / math.sqrt(1.0 + ts[0] ** 2)
    steps, order = len(ts) - 1, min(3, len(ts) - 2)
    for si in range(steps):
        if si == 0:
            models, times = [x0(x, ts[0])], [ts[0]]
        elif si < order:
            x, m = update(x, models, times, ts[si], si, True)
            models.append(m if m is not None else x0(x, ts[si]))
            times.append(ts[si])
        else:
            for step in range(si, si + 1 + (1 if si == steps - 1 else 0)):
                o = min(order, steps + 1 - step)
                x, m = update(x, models, times, ts[step], o, step != steps)
                for i in range(order - 1):
                    times[i], models[i] = times[i + 1], models[i + 1]
                times[-1] = ts[step]
                if step < steps:
                    models[-1] = m if m is not None else x0(x, ts[step])
    return x / alpha(ts[-1])


def comfy_sigmas(kind, steps):
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    ac = torch.cumprod(1 - betas, 0)
    table = ((1 - ac) / ac) ** 0.5
    if kind == "karras":
        return torch.cat([K.get_sigmas_karras(steps, table[0].item(), table[-1].item(), rho=7.0), torch.zeros(0)])
    log_t = table.log()
    def t_of(s):
        d = math.log(s) - log_t
        low = int((d >= 0).cumsum(0).argmax().clamp(max=len(table) - 2))
        w = ((log_t[low] - math.log(s)) / (log_t[low] - log_t[low + 1])).clamp(0, 1)
        return (1 - w) * low + w * (low + 1)
    def sigma_of(t):
        lo, hi, w = int(math.floor(t)), int(math.ceil(t)), t - math.floor(t)
        return math.exp((1 - w) * log_t[lo] + w * log_t[hi])
    ts = torch.linspace(float(t_of(table[-1].item())), float(t_of(table[0].item())), steps)
    return torch.tensor([sigma_of(float(t)) for t in ts] + [0.0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(20261123)
    x0 = torch.randn(2, 4, 8, 8, generator=gen) * 14.0
    noise = [torch.randn(2, 4, 8, 8, generator=gen) for _ in range(64)]
    out = {"x0": x0}
    for i, n in enumerate(noise):
        out[f"noise_{i}"] = n
    samplers = {
        "euler": K.sample_euler, "euler_ancestral": K.sample_euler_ancestral, "heun": K.sample_heun,
        "dpm_2": K.sample_dpm_2, "dpm_2_ancestral": K.sample_dpm_2_ancestral, "lms": K.sample_lms,
        "dpmpp_2s_ancestral": K.sample_dpmpp_2s_ancestral, "dpmpp_sde": K.sample_dpmpp_sde,
        "dpmpp_2m": K.sample_dpmpp_2m, "dpmpp_2m_sde": K.sample_dpmpp_2m_sde,
        "dpmpp_3m_sde": K.sample_dpmpp_3m_sde,
    }
    for sched in ("karras", "normal"):
        sigmas = comfy_sigmas(sched, 8)
        out[f"sigmas_{sched}"] = sigmas
        for name, fn in samplers.items():
            ns = Replay(noise)
            kwargs = {"disable": True}
            if name in ("euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde",
                        "dpmpp_2m_sde", "dpmpp_3m_sde"):
                kwargs["noise_sampler"] = ns
            res = fn(Model(), x0.clone(), sigmas, **kwargs)
            out[f"out_{name}_{sched}"] = res
            out[f"draws_{name}_{sched}"] = torch.tensor([ns.used])
        out[f"out_ddim_{sched}"] = K.sample_euler(Model(), x0.clone(), sigmas, disable=True)
        ns = Replay(noise)
        out[f"out_lcm_{sched}"] = lcm(x0.clone(), sigmas, ns)
        out[f"draws_lcm_{sched}"] = torch.tensor([ns.used])
        # uni_pc's schedule drops the penultimate sigma in ComfyUI; the sampler itself just
        # walks what it is given, so the same list serves here.
        out[f"out_uni_pc_{sched}"] = unipc_bh1(x0.clone(), sigmas)
    # ComfyUI's per-step noise for ancestral samplers (comfy/k_diffusion/sampling.py,
    # default_noise_sampler): a generator on the latent's device seeded with the job seed,
    # plus one on the CPU, drawing randn in the latent's shape and dtype step after step.
    xf = x0.float()
    sig = comfy_sigmas("karras", 8)
    for name, fn in (("euler_ancestral", K.sample_euler_ancestral), ("dpmpp_2s_ancestral", K.sample_dpmpp_2s_ancestral)):
        g = torch.Generator().manual_seed(1234 + 1)
        sampler = lambda s, sn, g=g: torch.randn(xf.size(), dtype=torch.float32, generator=g)
        out[f"comfy_seeded_{name}"] = fn(Model(), xf.clone(), sig, disable=True, noise_sampler=sampler)
    out["x0_f32"] = xf
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(args.out, "samplers.safetensors"))


if __name__ == "__main__":
    main()
