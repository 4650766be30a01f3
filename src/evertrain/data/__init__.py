"""evertrain.data"""
