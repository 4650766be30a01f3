"""evertrain.train"""
