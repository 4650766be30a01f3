"""evertrain.schedules"""
