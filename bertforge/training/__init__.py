"""bertforge.training"""
