import sys, time, statistics, torch
sys.path.insert(0, "python")
import kiln
from kiln.examples.tiny_gpt import build_tiny_gpt, TinyGPTConfig
m, (t,) = build_tiny_gpt(TinyGPTConfig(), seq_len=16)
print(torch.cuda.get_device_name(0))
for dtype in ("f32", "f16"):
    mm = (m.half() if dtype == "f16" else m.float()).cuda()
    run = kiln.load(f".device/final/gen-{dtype}.vmfb", device="cuda")
    print(dtype, "entry points:", run.entry_points)
    logits, keys, values = run.prefill(t)
    with torch.no_grad():
        ref = mm(t.cuda()).float().cpu()
    err_prefill = (logits.float() - ref).abs().max().item()
    tok = logits[:, -1:].argmax(-1)
    times = []
    for _ in range(30):
        s = time.perf_counter(); out, k2, v2 = run.decode(tok, keys, values); times.append(time.perf_counter() - s)
    with torch.no_grad():
        ref = mm(torch.cat([t, tok], 1).cuda())[:, -1:].float().cpu()
    print(dtype, "prefill max err", err_prefill, "decode max err", (out.float() - ref).abs().max().item(),
          "decode call median ms (Python, host arrays)", round(1e3 * statistics.median(times[5:]), 3))
    with torch.no_grad():
        ref = mm(t.cuda()).float().cpu()
    both = kiln.load(f".device/final/both-{dtype}.vmfb", device="cuda")
    print(dtype, "cpu+cuda artifact on cuda: max err", (both(t).float() - ref).abs().max().item())
    bothc = kiln.load(f".device/final/both-{dtype}.vmfb", device="cpu")
    print(dtype, "cpu+cuda artifact on cpu: max err", (bothc(t).float() - ref).abs().max().item())
