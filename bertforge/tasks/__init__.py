"""bertforge.tasks"""
