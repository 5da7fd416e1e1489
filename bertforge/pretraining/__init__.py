"""bertforge.pretraining"""
