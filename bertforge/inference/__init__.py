"""bertforge.inference"""
