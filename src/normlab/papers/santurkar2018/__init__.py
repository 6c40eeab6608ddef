"""Santurkar et al. 2018, "How Does Batch Normalization Help Optimization?": the deep linear
network's figures (`dln_*`), VGG-16 on CIFAR-10's (`vgg_*`) and Sec. 4 on the MLP
(`theory_mlp`); `protocol` holds the paper's facts, `landscape` the landscape claims' measure
shared by the DLN and VGG figures, `vgg` what the VGG figures share."""
